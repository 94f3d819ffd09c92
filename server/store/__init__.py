"""Time-series stores behind one interface (:class:`server.store.base.Store`)."""
