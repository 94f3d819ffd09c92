"""The registry, people and audit log as typed async calls, for routes and pages.

Routes ask ``state.registry`` (a ``RegistryAccess``) instead of handing raw
``conn``-first functions to ``store.db``: each method names what it does, its arguments
and result are checked by mypy, and it runs on the reader pool or the writer thread as the
underlying function needs. The sync functions stay in ``server/registry.py``,
``server/people.py``, ``server/auth.py`` and ``server/audit.py`` (the CLI and tests call
them on a connection directly).
"""

from __future__ import annotations

from server import audit, people, registry
from server.audit import Action, AuditEntry
from server.auth import Principal, can_edit_devices, identify, readable_hamlets
from server.models import DeviceIn, HamletOut
from server.registry import GatewayRow, Role, UserRow
from server.store import gw_status, ledger
from server.store.db import Database
from server.store.gw_status import LatestReport


class RegistryAccess:
    """Typed reads and writes of the registry over one ``Database``."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # -- who is asking, and what they may do ----------------------------------------------
    async def principal(
        self, secret: bytes, authorization: str | None, cookie: str | None
    ) -> Principal:
        """Who sends this Authorization header or session cookie."""
        return await self._db.read(identify, secret, authorization, cookie)

    async def readable_hamlets(self, p: Principal, *, open_read: bool) -> list[str] | None:
        """Hamlets ``p`` may read (None: all)."""
        return await self._db.read(readable_hamlets, p, open_read)

    async def can_edit_devices(self, p: Principal, hamlet: str) -> bool:
        return await self._db.read(can_edit_devices, p, hamlet)

    # -- hamlets, gateways, devices --------------------------------------------------------
    async def hamlets(self, among: list[str] | None = None) -> list[HamletOut]:
        """Registered hamlets whose id is in ``among`` (None: all of them)."""
        rows = await self._db.read(registry.list_hamlets)
        return [h for h in rows if among is None or h.id in among]

    async def hamlets_of_commune(self, commune: str) -> list[str]:
        return await self._db.read(registry.hamlets_of_commune, commune)

    async def add_commune(self, commune_id: str, name: str = "") -> None:
        await self._db.write(registry.add_commune, commune_id, name)

    async def add_hamlet(
        self, hamlet_id: str, *, commune: str | None, name: str, public: bool | None
    ) -> None:
        await self._db.write(
            registry.add_hamlet, hamlet_id, commune=commune, name=name, public=public
        )

    async def gateways(self, hamlets: list[str] | None) -> list[GatewayRow]:
        """Gateways of these hamlets (None: all)."""
        return await self._db.read(registry.list_gateways, hamlets)

    async def gateway(self, gateway_id: str) -> GatewayRow | None:
        return await self._db.read(registry.gateway_by_id, gateway_id)

    async def gateway_by_token(self, token: str) -> GatewayRow | None:
        return await self._db.read(registry.gateway_by_token, token)

    async def add_gateway(self, gateway_id: str, hamlet: str | None) -> str:
        """Register a gateway; returns its token (shown once)."""
        return await self._db.write(registry.add_gateway, gateway_id, hamlet)

    async def revoke_gateway(self, gateway_id: str) -> None:
        await self._db.write(registry.revoke_gateway, gateway_id)

    async def rejections(self, gateway: GatewayRow, limit: int) -> list[tuple[int, str, int]]:
        """The gateway's newest rejected records: (seq, reason, at ms)."""
        return await self._db.read(ledger.rejections, gateway.num, limit)

    async def status_reports(self, gateways: list[GatewayRow]) -> dict[int, LatestReport]:
        """{gateway num: its latest status report} of those that ever sent one."""
        return await self._db.read(gw_status.latest, [g.num for g in gateways])

    async def upsert_device(self, hamlet: str, dev: DeviceIn) -> None:
        await self._db.write(registry.upsert_device, hamlet, dev)

    # -- people and sessions ---------------------------------------------------------------
    async def user(self, name: str) -> UserRow | None:
        return await self._db.read(registry.user_by_name, name)

    async def users(self) -> list[UserRow]:
        return await self._db.read(registry.list_users)

    async def users_with_sessions(self) -> list[tuple[UserRow, int]]:
        """Every person with their number of live sessions."""
        return await self._db.read(people.users_with_sessions)

    async def create_user(
        self,
        name: str,
        role: Role,
        password: str,
        *,
        commune: str | None,
        hamlet: str | None,
        actor: str,
        address: str,
    ) -> None:
        """A new account with a temporary password, audited."""
        await self._db.write(
            people.create_user,
            name,
            role,
            password,
            commune=commune,
            hamlet=hamlet,
            actor=actor,
            address=address,
        )

    async def set_role(
        self,
        name: str,
        role: Role,
        *,
        commune: str | None,
        hamlet: str | None,
        actor: str,
        address: str,
    ) -> None:
        await self._db.write(
            people.set_role,
            name,
            role,
            commune=commune,
            hamlet=hamlet,
            actor=actor,
            address=address,
        )

    async def set_disabled(self, name: str, disabled: bool, *, actor: str, address: str) -> None:
        await self._db.write(people.set_disabled, name, disabled, actor=actor, address=address)

    async def delete_user(self, name: str, *, actor: str, address: str) -> None:
        await self._db.write(people.delete_user, name, actor=actor, address=address)

    async def reset_password(self, name: str, password: str, *, actor: str, address: str) -> None:
        await self._db.write(people.reset_password, name, password, actor=actor, address=address)

    async def change_own_password(
        self, user_id: int, password: str, *, keep_session: str, address: str
    ) -> None:
        await self._db.write(
            people.change_own_password,
            user_id,
            password,
            keep_session=keep_session,
            address=address,
        )

    async def revoke_sessions(self, name: str, *, actor: str, address: str) -> int:
        return await self._db.write(people.revoke_sessions, name, actor=actor, address=address)

    async def create_session(self, user: UserRow, hours: float, address: str) -> str:
        """A new session; returns its cookie value."""
        return await self._db.write(people.create_session, user, hours, address)

    async def end_session(self, cookie: str, address: str) -> None:
        await self._db.write(people.end_session, cookie, address)

    # -- audit log -------------------------------------------------------------------------
    async def audit(
        self, actor: str, action: Action, target: str = "", *, address: str = ""
    ) -> None:
        await self._db.write(audit.record, actor, action, target, address=address)

    async def audit_entries(
        self, *, limit: int, action: str | None, target: str | None, since_ms: int | None
    ) -> list[AuditEntry]:
        """Newest first."""
        return await self._db.read(
            audit.entries, limit=limit, action=action, target=target, since_ms=since_ms
        )
