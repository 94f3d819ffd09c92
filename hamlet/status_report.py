"""The gateway's status report: its sources' states and its recent dead letters, for installers.

Carried like any record, so it is buffered through outages and stored exactly once: an
:class:`hamlet.contract.EventRecord` of the gateway itself (``device`` = the gateway id),
``name`` = :data:`STATUS_EVENT`, with one attribute, :data:`REPORT_ATTR`, holding a
:class:`GatewayReport` as compact JSON text of at most :data:`MAX_REPORT_BYTES` (UTF-8).

The gateway builds it (gateway/status_report.py), the server validates it with
:func:`parse_report` and keeps the latest per gateway; a report that does not parse or is too
big is rejected alone, with the reason, like any bad record. Only pydantic and the standard
library here: both sides import it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

STATUS_EVENT: Final = "gateway_status"
REPORT_ATTR: Final = "report"
REPORT_VERSION: Final = 1
# Small on a metered 3G link (3 sources and 10 alike dead letters: 4.9 KB of JSON, 0.6 KB
# gzipped) and bounded whatever the gateway holds: the builder drops detail until it fits.
MAX_REPORT_BYTES: Final = 8 * 1024
MAX_SOURCES: Final = 32
MAX_COMPONENTS: Final = 32
MAX_LETTERS: Final = 10
MAX_REASON_CODES: Final = 20
MAX_DEVICES_DOWN: Final = 8  # per source
MAX_NAME: Final = 100
MAX_TEXT: Final = 300  # an error or a reason
MAX_EXCERPT: Final = 200  # characters of a dead letter's bytes, escaped
_MAX_INT: Final = 2**53  # beyond this, JSON numbers stop being exact

Name = Annotated[str, StringConstraints(max_length=MAX_NAME)]
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT)]
Count = Annotated[int, Field(ge=0, le=_MAX_INT)]
Millis = Annotated[int, Field(ge=0, le=_MAX_INT)]
# The states of gateway/sources/base.py's SourceStatus (the gateway's typed control plane).
SourceState = Literal["starting", "running", "reconnecting", "failed", "stopped"]
ComponentState = Literal["running", "failed", "stopped"]
# A Modbus device that stopped answering: retried every poll, then probed less often.
DeviceState = Literal["failing", "dead"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeviceReport(_Model):
    device: Name
    state: DeviceState
    error: Text | None = None


class SourceReport(_Model):
    name: Name
    kind: Annotated[str, StringConstraints(max_length=20)]  # serial | modbus | mqtt
    state: SourceState
    since: Millis  # wall time of the last state change
    last_reading_at: Millis | None = None
    last_error: Text | None = None
    # A source can run while devices behind it do not answer (a Modbus bus).
    devices_down: list[DeviceReport] = Field(default_factory=list, max_length=MAX_DEVICES_DOWN)


class ComponentReport(_Model):
    name: Name
    state: ComponentState
    error: Text | None = None


class DeadLetterReport(_Model):
    at: Millis
    source: Name
    topic: Name | None = None  # MQTT: the topic the message came on
    reason: Text
    excerpt: Annotated[str, StringConstraints(max_length=MAX_EXCERPT + 1)]  # + "…"
    size: Count  # bytes kept of the raw input
    truncated: bool = False


class DeadLetterSummary(_Model):
    stored: Count = 0  # dead letters the gateway holds now
    by_reason: dict[Annotated[str, StringConstraints(max_length=60)], Count] = Field(
        default_factory=dict, max_length=MAX_REASON_CODES
    )
    recent: list[DeadLetterReport] = Field(default_factory=list, max_length=MAX_LETTERS)


class GatewayReport(_Model):
    v: Literal[1] = REPORT_VERSION
    at: Millis  # gateway wall time when built
    sources: list[SourceReport] = Field(default_factory=list, max_length=MAX_SOURCES)
    sources_omitted: Count = 0  # left out to stay within MAX_REPORT_BYTES
    components: list[ComponentReport] = Field(default_factory=list, max_length=MAX_COMPONENTS)
    dead: DeadLetterSummary = Field(default_factory=DeadLetterSummary)

    def encode(self) -> str:
        return self.model_dump_json(exclude_defaults=True)


class ReportError(ValueError):
    """A status report the server cannot use; the message is the rejection reason."""


def parse_report(text: str) -> GatewayReport:
    """The report in ``text``, or :class:`ReportError` saying what is wrong with it."""
    size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > MAX_REPORT_BYTES:
        raise ReportError(f"status_report: {size} bytes; at most {MAX_REPORT_BYTES}")
    try:
        return GatewayReport.model_validate_json(text)
    except ValidationError as err:
        first = err.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "report"
        raise ReportError(
            f"status_report: {where}: {first['msg']} ({err.error_count()} problems)"[:MAX_TEXT]
        ) from err


def parse_attrs(attrs: Mapping[str, object]) -> GatewayReport:
    """The report carried by a status event's attributes (exactly one, a string)."""
    if set(attrs) != {REPORT_ATTR} or not isinstance(attrs[REPORT_ATTR], str):
        keys = json.dumps(sorted(attrs)[:5], ensure_ascii=True)
        raise ReportError(
            f"status_report: a {STATUS_EVENT} event carries one text attribute "
            f"{REPORT_ATTR!r}, not {keys}"
        )
    return parse_report(str(attrs[REPORT_ATTR]))
