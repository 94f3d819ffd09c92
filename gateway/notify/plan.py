"""The hamlet's edge plan, fetched from the server with an ETag and cached on disk, so a gateway
that restarts during an outage still knows whom to warn."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import httpx
import pydantic

from hamlet.durable import write_atomic
from hamlet.edgeplan import EdgePlan

PLAN_PATH = "/api/v1/notify/edge-plan"


class PlanUnavailable(Exception):
    """No plan from the server and none cached: the gateway cannot send alerts itself."""


class EdgePlanCache:
    def __init__(self, path: Path, server_url: str, token: str, client: httpx.AsyncClient) -> None:
        self.path = path
        self.url = server_url.rstrip("/") + PLAN_PATH
        self.token = token
        self.client = client
        self.plan: EdgePlan | None = None
        self.not_modified = 0  # 304 answers (the plan had not changed)

    def load(self) -> EdgePlan:
        """The plan on disk (after a restart with the server unreachable)."""
        try:
            self.plan = EdgePlan.model_validate_json(self.path.read_bytes())
        except FileNotFoundError as err:
            raise PlanUnavailable(f"no cached plan at {self.path}") from err
        except pydantic.ValidationError as err:
            raise PlanUnavailable(f"cached plan {self.path} is unreadable: {err}") from err
        return self.plan

    async def refresh(self) -> EdgePlan:
        """Ask the server; on a network error keep (or load) the cached plan."""
        if self.plan is None:
            with contextlib.suppress(PlanUnavailable):
                self.load()
        headers = {"Authorization": f"Bearer {self.token}"}
        if self.plan is not None:
            headers["If-None-Match"] = f'"{self.plan.version}"'
        try:
            resp = await self.client.get(self.url, headers=headers)
        except httpx.HTTPError as err:
            if self.plan is None:
                raise PlanUnavailable(f"server unreachable ({err!r}) and no cached plan") from err
            return self.plan
        if resp.status_code == 304 and self.plan is not None:
            self.not_modified += 1
            return self.plan
        if not resp.is_success:
            if self.plan is None:
                raise PlanUnavailable(f"server answered {resp.status_code} and no cached plan")
            return self.plan
        plan = EdgePlan.model_validate_json(resp.content)
        self._save(plan)
        self.plan = plan
        return plan

    def _save(self, plan: EdgePlan) -> None:
        write_atomic(self.path, json.dumps(plan.model_dump(), ensure_ascii=False).encode())
