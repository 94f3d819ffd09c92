"""Smart-hamlet data platform: gateway, server and firmware simulator behind one CLI."""

__version__ = "0.1.0"
