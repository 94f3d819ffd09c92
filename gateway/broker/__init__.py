"""The field broker (Mosquitto 2 on the Pi): its configuration, device credentials and ACL,
and the health figures it publishes under ``$SYS``."""
