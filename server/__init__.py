"""Smart-hamlet backend: ingest, time-series store, indicators, dashboard."""
