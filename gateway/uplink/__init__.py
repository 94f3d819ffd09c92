"""Uplink: buffered records -> server over HTTPS, live first, never giving up."""

from gateway.control_protocol import UplinkState
from gateway.uplink.client import Uplink, UplinkStatus

__all__ = ["Uplink", "UplinkState", "UplinkStatus"]
