"""Who may manage which subscribers and subscriptions — one policy for the API, the pages and
``hamlet server notify --as``.

- admin: everyone.
- staff: subscribers who belong to a hamlet of their commune, and subscriptions to those
  hamlets only (a subscription of theirs to another commune's hamlet stays hidden).
- a farmer (viewer): the subscribers linked to their own login, subscribed to their own hamlet.
- installers and everyone else: nothing (installers check the modem from the server's shell).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from server import registry
from server.notify.store import Subscriber, Subscription
from server.registry import Role, UserRow


@dataclass(frozen=True)
class NotifyScope:
    everything: bool = False
    hamlets: frozenset[str] = frozenset()  # hamlets whose alerts they may subscribe people to
    own_user: int | None = None  # a farmer: only subscribers linked to this login
    staff: bool = False  # may add webhooks, staff (escalation) subscribers, send test messages

    def manages(self, sub: Subscriber) -> bool:
        if self.everything:
            return True
        if self.own_user is not None:
            return sub.user_id == self.own_user
        return sub.hamlet is not None and sub.hamlet in self.hamlets

    def covers(self, hamlet: str) -> bool:
        return self.everything or hamlet in self.hamlets

    def sees(self, subscription: Subscription) -> bool:
        return self.covers(subscription.hamlet)

    def log_hamlets(self) -> list[str] | None:
        """The delivery log's hamlets this caller reads (None: all)."""
        return None if self.everything else sorted(self.hamlets)


NOTHING = NotifyScope()


def scope_of(conn: sqlite3.Connection, user: UserRow | None) -> NotifyScope:
    if user is None or user.disabled:
        return NOTHING
    if user.role == Role.ADMIN:
        return NotifyScope(everything=True, staff=True)
    if user.role == Role.STAFF:
        hamlets = registry.hamlets_of_commune(conn, user.commune) if user.commune else []
        return NotifyScope(hamlets=frozenset(hamlets), staff=True)
    if user.role == Role.VIEWER and user.hamlet:
        return NotifyScope(hamlets=frozenset({user.hamlet}), own_user=user.id)
    return NOTHING
