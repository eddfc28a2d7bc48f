"""uvicorn's httptools protocol with a bound on the size of a request's head.

httptools (llhttp) sets no limit on the request line and headers: a header value that
arrives over many reads is joined in memory until its line ends, so one client could make a
process hold megabytes (and copy them over and over) before any code of the service runs.
uvicorn's own bound, `h11_max_incomplete_event_size`, applies only to its h11 protocol.

This protocol counts the bytes a request's head arrives in, and refuses the request with
431 and closes the connection once they pass the bound; it reads that bound from the same
option, so one number bounds heads whichever protocol serves. The count is an integer
addition per read while a head is incomplete: the read path pays nothing else for it
(bench/http_head.py measures it, bench/read_path.py the whole read).
"""

from __future__ import annotations

import asyncio
from typing import Any

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

# uvicorn's h11 default, and what browsers and proxies stay far below (nginx: 8 KiB per line).
DEFAULT_MAX_HEAD = 16 * 1024

_TOO_LARGE = b"Request header fields too large"
_RESPONSE_431 = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"content-length: " + str(len(_TOO_LARGE)).encode() + b"\r\n"
    b"connection: close\r\n"
    b"\r\n" + _TOO_LARGE
)


class _HeadTooLargeError(Exception):
    """Raised from the parser's callback to stop it: the head was over the bound."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol refusing a request whose line and headers pass the bound."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._max_head = config.h11_max_incomplete_event_size or DEFAULT_MAX_HEAD
        # Bytes read since the current head began. A read that also holds a body or the
        # next request counts whole: only a count past the bound has the exact size of the
        # head computed (on_headers_complete), so a body never trips the bound.
        self._head_bytes = 0
        self._in_head = True

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
            if self._head_bytes > self._max_head:
                self._receive_past_bound(data)
                return
        super().data_received(data)

    def _receive_past_bound(self, data: bytes) -> None:
        """uvicorn's data_received, for a read taking the head's count past the bound: a
        head that ends in it is judged in on_headers_complete, one that does not is refused."""
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _HeadTooLargeError):
                self._refuse()
                return
            self.logger.warning("Invalid HTTP request received.")
            self.send_400_response("Invalid HTTP request received.")
            return
        except httptools.HttpParserError:
            self.logger.warning("Invalid HTTP request received.")
            self.send_400_response("Invalid HTTP request received.")
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if self._in_head and self._head_bytes > self._max_head:
            self._refuse()  # still no end of the head, and already over the bound

    def on_headers_complete(self) -> None:
        if self._head_bytes > self._max_head and self._head_size() > self._max_head:
            raise _HeadTooLargeError
        self._in_head = False
        self._head_bytes = 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        # The next bytes on this connection start the next request's head.
        self._in_head = True
        super().on_message_complete()

    def _head_size(self) -> int:
        # The request line and `name: value\r\n` per header, about as they came on the wire.
        return len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)

    def _refuse(self) -> None:
        # Not a warning: a client's mistake (or attack) must not flood the log.
        self.logger.info("Request head over %d bytes refused with 431.", self._max_head)
        self.transport.write(_RESPONSE_431)
        self.transport.close()
