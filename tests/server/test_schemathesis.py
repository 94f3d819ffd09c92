"""Property-based requests generated from our own OpenAPI document: no 5xx, ever."""

from __future__ import annotations

import sqlite3

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server import registry
from server.registry import Role
from tests.server.helpers import batch, block, body
from tests.support.procs import ServerProcess

MAX_EXAMPLES = 30


@pytest.mark.timeout(300)
def test_no_server_errors_on_any_operation(server: ServerProcess) -> None:
    conn = sqlite3.connect(server.data_dir / "hamlet.sqlite3", isolation_level=None)
    tokens: dict[str, str] = {}
    try:
        for name, role, scope in (
            ("root", Role.ADMIN, {}),
            ("inst", Role.INSTALLER, {}),
            ("staff", Role.STAFF, {"commune": "dinh-mon"}),
            ("farmer", Role.VIEWER, {"hamlet": "dinh-phuoc"}),
        ):
            registry.add_user(conn, name, role, None, **scope)
            tokens[str(role)] = registry.create_user_token(conn, name)
    finally:
        conn.close()
    gw_token = server.add_gateway("gw-fuzz")
    import httpx

    data, hdrs = body(batch("gw-fuzz", [block("sal-1", "salinity", [1, 2, 3])]))
    httpx.post(
        f"{server.url}/api/v1/ingest",
        content=data,
        headers={**hdrs, "Authorization": f"Bearer {gw_token}"},
    ).raise_for_status()

    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    failures: list[str] = []
    seen: dict[int, int] = {}
    ops = [r.ok() for r in schema.get_all_operations()]
    assert len(ops) >= 10

    def check(op: schemathesis.APIOperation, auth: list[str]) -> None:
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=op.as_strategy(), who=st.sampled_from([None, *auth]))
        def run(case: schemathesis.Case, who: str | None) -> None:
            headers = {} if who is None else {"Authorization": f"Bearer {who}"}
            resp = case.call(base_url=server.url, headers=headers, timeout=30)
            seen[resp.status_code] = seen.get(resp.status_code, 0) + 1
            if resp.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path} -> {resp.status_code}: {resp.text[:300]}"
                )

        run()

    for op in ops:
        # Every role (and anonymous) against every operation; ingest with the gateway's token.
        check(op, [gw_token] if op.path.endswith("/ingest") else list(tokens.values()))
    print(f"\nstatuses: {sorted(seen.items())}")
    assert not failures, "\n".join(failures[:20])
    assert seen.get(200, 0) > 20, seen  # it reached real handlers, not just 401/422
    # The server is still healthy afterwards.
    assert httpx.get(f"{server.url}/readyz").status_code == 200
