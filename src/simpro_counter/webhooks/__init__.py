"""Simpro webhooks: the event names, the subscription, parsing and queueing deliveries, and
the worker that applies them.

`events` lists the event names once; `subscriptions` manages the build's subscription;
`signature` and `receiver` verify and parse a delivery; `replay` decides which are stale
or replays; `queue` owns the Redis stream it waits in (both sides) and the replay marks;
`lookup` fetches the invoice a delivery names and decides what a 404 proves; `worker`
applies it to the ledger and publishes the values.
"""
