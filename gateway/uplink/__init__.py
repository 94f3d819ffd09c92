"""Uplink: buffered records -> server over HTTPS, live first, never giving up."""

from gateway.uplink.client import Uplink, UplinkState, UplinkStatus

__all__ = ["Uplink", "UplinkState", "UplinkStatus"]
