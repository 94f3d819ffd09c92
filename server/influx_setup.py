"""``hamlet server influx-setup``: the buckets and the downsampling task the InfluxDB backend
reads from, created once and kept in step (idempotent).

What to do is decided by :func:`plan` from what InfluxDB has (a pure function, tested without
InfluxDB); :func:`apply` reads the state and carries the plan out through influxdb-client.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final

from server.config import InfluxConfig
from server.store.influx import downsample_task_flux

if TYPE_CHECKING:
    from influxdb_client.client.influxdb_client import InfluxDBClient

TASK_NAME: Final = "hamlet-hourly"  # the name inside downsample_task_flux's option task


class InfluxSetupError(Exception):
    """InfluxDB refused or is unreachable; the message says what to check."""


class Action(StrEnum):
    CREATE_BUCKET = "create bucket"
    CREATE_TASK = "create task"
    UPDATE_TASK = "update task"
    ACTIVATE_TASK = "activate task"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class ExistingTask:
    id: str
    flux: str
    active: bool


@dataclass(frozen=True)
class State:
    buckets: frozenset[str]
    task: ExistingTask | None


@dataclass(frozen=True)
class Step:
    action: Action
    what: str


def wanted_flux(cfg: InfluxConfig) -> str:
    return downsample_task_flux(cfg.bucket, cfg.rollup_bucket, cfg.org)


def plan(state: State, cfg: InfluxConfig) -> list[Step]:
    """What has to change so InfluxDB has both buckets and the current, active task."""
    steps: list[Step] = []
    for name in (cfg.bucket, cfg.rollup_bucket):
        if name in state.buckets:
            steps.append(Step(Action.UNCHANGED, f"bucket {name}"))
        else:
            steps.append(Step(Action.CREATE_BUCKET, name))
    flux = wanted_flux(cfg)
    if state.task is None:
        steps.append(Step(Action.CREATE_TASK, TASK_NAME))
    elif state.task.flux.strip() != flux.strip():
        # A newer release changed the task (or someone edited it): put ours back.
        steps.append(Step(Action.UPDATE_TASK, TASK_NAME))
    elif not state.task.active:
        steps.append(Step(Action.ACTIVATE_TASK, TASK_NAME))
    else:
        steps.append(Step(Action.UNCHANGED, f"task {TASK_NAME}"))
    return steps


def changed(steps: list[Step]) -> bool:
    return any(s.action is not Action.UNCHANGED for s in steps)


# ----------------------------------------------------------------- talking to InfluxDB


def _org_id(client: InfluxDBClient, org: str) -> str:
    api: Any = client.organizations_api()  # influxdb-client is untyped
    orgs = api.find_organizations(org=org)
    if not orgs:
        raise InfluxSetupError(
            f"InfluxDB has no organisation {org!r}: create it (the compose stack does, from "
            "DOCKER_INFLUXDB_INIT_ORG) or set store.influxdb.org"
        )
    return str(orgs[0].id)


def read_state(client: InfluxDBClient, cfg: InfluxConfig, org_id: str) -> State:
    buckets: Any = client.buckets_api()
    present = frozenset(
        name for name in (cfg.bucket, cfg.rollup_bucket) if buckets.find_bucket_by_name(name)
    )
    tasks_api: Any = client.tasks_api()
    tasks = tasks_api.find_tasks(name=TASK_NAME, org_id=org_id)
    task = None
    if tasks:
        t = tasks[0]
        task = ExistingTask(id=str(t.id), flux=str(t.flux), active=str(t.status) == "active")
    return State(present, task)


def _carry_out(client: InfluxDBClient, cfg: InfluxConfig, org_id: str, state: State,
               step: Step) -> None:  # fmt: skip
    from influxdb_client.domain.task_create_request import TaskCreateRequest

    request: Any = TaskCreateRequest
    tasks: Any = client.tasks_api()
    if step.action is Action.CREATE_BUCKET:
        # Kept forever: raw retention is an operator's choice (influx bucket update).
        buckets: Any = client.buckets_api()
        buckets.create_bucket(bucket_name=step.what, org_id=org_id)
    elif step.action is Action.CREATE_TASK:
        tasks.create_task(
            task_create_request=request(
                org_id=org_id,
                flux=wanted_flux(cfg),
                status="active",
                description="hamlet: hourly mean/min/max/n into the rollup bucket",
            )
        )
    elif step.action in {Action.UPDATE_TASK, Action.ACTIVATE_TASK}:
        assert state.task is not None
        task: Any = tasks.find_task_by_id(state.task.id)
        task.flux = wanted_flux(cfg)
        task.status = "active"
        tasks.update_task(task)


def apply(cfg: InfluxConfig, say: Callable[[str], None]) -> list[Step]:
    """Bring InfluxDB in line with :func:`plan`; report each step through ``say``."""
    from influxdb_client.client.influxdb_client import InfluxDBClient

    token = cfg.token.get_secret_value() if cfg.token else ""
    with InfluxDBClient(url=cfg.url, token=token, org=cfg.org, timeout=cfg.timeout_ms) as c:
        # influxdb-client raises ApiException, urllib3 and socket errors alike: this is the
        # InfluxDB boundary, each one becomes an InfluxSetupError naming what was attempted.
        try:
            org_id = _org_id(c, cfg.org)
            state = read_state(c, cfg, org_id)
        except InfluxSetupError:
            raise
        except Exception as err:
            raise InfluxSetupError(f"cannot read InfluxDB at {cfg.url}: {err}") from err
        steps = plan(state, cfg)
        for step in steps:
            try:
                _carry_out(c, cfg, org_id, state, step)
            except Exception as err:
                raise InfluxSetupError(f"{step.action} {step.what} failed: {err}") from err
            say(f"{step.action}: {step.what}")
    return steps
