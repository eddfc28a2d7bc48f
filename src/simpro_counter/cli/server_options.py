"""uvicorn's options from the settings: the one place the HTTP server's edge is set.

`serve` (one process) and `serve --workers N` (uvicorn's supervisor) both pass these, so
a limit holds the same however the service runs. docs/deploy.md ("Limits") explains each.
"""

from __future__ import annotations

from typing import TypedDict

from simpro_counter.settings import Settings

# The protocol, as an import string: `serve --workers N` sends the options to processes
# started afresh (spawn), which import it themselves.
HTTP_PROTOCOL = "simpro_counter.web.http_protocol:BoundedHttpToolsProtocol"
# Connections waiting in the kernel to be accepted (uvicorn's default; Linux caps it at
# net.core.somaxconn, 4096 on current kernels): a burst waits there instead of being refused.
BACKLOG = 2048
# Seconds an idle keep-alive connection stays open. An idle connection counts against
# MAX_CONNECTIONS, so this stays short (uvicorn's default); a proxy in front keeps its own
# pool of connections and should close them sooner than this (or retry on a closed one).
KEEP_ALIVE_SECONDS = 5
GRACEFUL_SHUTDOWN_SECONDS = 10


class ServerOptions(TypedDict):
    """Keyword arguments of `uvicorn.run` (and `uvicorn.Config`) that the settings decide."""

    host: str
    port: int
    http: str
    limit_concurrency: int
    backlog: int
    timeout_keep_alive: int
    h11_max_incomplete_event_size: int
    proxy_headers: bool
    forwarded_allow_ips: str | None
    access_log: bool
    log_config: None
    timeout_graceful_shutdown: int


def server_options(settings: Settings, *, access_log: bool) -> ServerOptions:
    trusted = ",".join(settings.forwarded_allow_ip_list)
    return ServerOptions(
        host=settings.host,
        port=settings.port,
        http=HTTP_PROTOCOL,
        # uvicorn answers 503 once the open connections (the asking one included) reach
        # the limit: +1 serves exactly MAX_CONNECTIONS at once.
        limit_concurrency=settings.max_connections + 1,
        backlog=BACKLOG,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        # Read by BoundedHttpToolsProtocol too: one bound on a request's head for either
        # protocol uvicorn may use.
        h11_max_incomplete_event_size=settings.max_request_head,
        # Without a trusted proxy, X-Forwarded-For/-Proto are a client's claims: ignored.
        # (uvicorn's own default would believe them from 127.0.0.1.)
        proxy_headers=bool(trusted),
        forwarded_allow_ips=trusted or None,
        access_log=access_log,
        log_config=None,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
