"""Simpro webhooks: managing the subscription (and, next, receiving the events)."""
