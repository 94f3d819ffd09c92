"""Alerts from the edge: the hamlet's SMS plan cached from the server, and a sender that uses
the gateway's own modem while the uplink is down (no server imports)."""
