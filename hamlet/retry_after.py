"""``Retry-After`` (RFC 9110 §10.2.3): how long a busy server asks the gateway to wait.

Two forms: delay-seconds (``120``) and an HTTP-date (``Wed, 21 Oct 2026 07:28:00 GMT``).
Anything else is ignored (the uplink's own backoff applies), never an error: a proxy's odd
header must not stop the upload loop.
"""

from __future__ import annotations

import re
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Final

_SECONDS: Final = re.compile(r"[0-9]{1,10}")  # ASCII digits only; 10 digits is centuries
_MAX_HEADER: Final = 64  # an HTTP-date is 29 characters


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from ``now`` (epoch seconds), or None when absent or unreadable.

    A date in the past means "now" (0 s).
    """
    if value is None:
        return None
    text = value.strip()
    if not text or len(text) > _MAX_HEADER:
        return None
    if _SECONDS.fullmatch(text):
        return float(int(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # RFC 850 / asctime forms carry no zone: HTTP dates are GMT
        when = when.replace(tzinfo=UTC)
    try:
        return max(0.0, when.timestamp() - now)
    except (OverflowError, OSError, ValueError):
        return None
