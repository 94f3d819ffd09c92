"""Logging that reads well in journald and in a terminal: one line, level, component, message."""

from __future__ import annotations

import logging
import os
import sys


def setup_logging(level: str | None = None) -> None:
    lvl = (level or os.environ.get("HAMLET_LOG_LEVEL") or "INFO").upper()
    # journald adds its own timestamp; a terminal run wants one.
    under_journald = "JOURNAL_STREAM" in os.environ
    fmt = "%(levelname)s %(name)s: %(message)s"
    if not under_journald:
        fmt = "%(asctime)s " + fmt
    logging.basicConfig(level=lvl, format=fmt, stream=sys.stderr, force=True)
    # One INFO line per HTTP request would bury what an installer needs to read in journald;
    # the uplink logs its own state changes instead.
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, logging.getLogger().level))
