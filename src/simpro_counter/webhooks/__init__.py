"""Simpro webhooks: the event names, the subscription, parsing and queueing deliveries, and
the worker that applies them.

`events` lists the event names once; `subscriptions` manages the build's subscription;
`signature` and `receiver` verify and parse a delivery; `queue` owns the Redis stream it
waits in (both sides); `worker` applies it to the ledger and publishes the values.
"""
