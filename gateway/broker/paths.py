"""Where Debian's mosquitto package keeps things (its mosquitto.conf includes conf.d/)."""

from __future__ import annotations

from pathlib import Path
from typing import Final

DEFAULT_PASSWORD_FILE: Final = Path("/etc/mosquitto/hamlet.passwd")
DEFAULT_ACL_FILE: Final = Path("/etc/mosquitto/hamlet.acl")
