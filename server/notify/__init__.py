"""Alerts that reach people: subscriptions, a durable outbox, channels (SMS, e-mail, webhooks)."""
