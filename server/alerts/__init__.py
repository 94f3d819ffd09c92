"""Alerts: rules evaluated on settled data (engine), stored in SQLite (table), served (routes)."""
