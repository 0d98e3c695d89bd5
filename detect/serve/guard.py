"""The connection guard of `detect serve`: a header-read deadline and a connection limit.

    protocol = guarded_h11_protocol(header_timeout_s=10, max_connections=256)
    uvicorn.run(app, http=protocol, limit_concurrency=..., ...)

uvicorn closes a keep-alive connection that sits idle after a response (timeout_keep_alive),
but a client that opens a connection and sends its request headers slowly, or never finishes
them, is kept for good: a few hundred such sockets use up the process's file descriptors (1,024
by default) and the server stops answering ("slowloris"). The guard, a subclass of uvicorn's h11
protocol:

- gives every request `header_timeout_s` from the connection (or the end of the previous
  response) to the end of its headers; a client still sending headers then gets 408 and the
  connection is closed;
- closes a connection at once when `max_connections` are already open (uvicorn's own
  limit_concurrency only answers 503 to requests whose headers have arrived).

A slow body is bounded by the upload cap and the server's worker pool; behind a reverse proxy,
the proxy's own timeouts apply first (docs/security.md).
"""

from __future__ import annotations

import asyncio
import logging

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("detect.serve")

DEFAULT_HEADER_TIMEOUT_S = 10.0
DEFAULT_MAX_CONNECTIONS = 256  # well under the default 1,024 file descriptors
_TIMEOUT_BODY = b'{"error": "request headers not received in time", "status": 408}'
_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"content-length: %d\r\n\r\n" % len(_TIMEOUT_BODY)
) + _TIMEOUT_BODY


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header-read deadline and a connection limit (class attributes,
    set by guarded_h11_protocol)."""

    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S
    max_connections: int = DEFAULT_MAX_CONNECTIONS

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._header_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            log.warning(
                "connection refused: %d connections open (the limit is %d)",
                len(self.connections) - 1,
                self.max_connections,
            )
            transport.abort()
            return
        self._watch_headers()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch_headers()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        super().connection_lost(exc)

    def _watch_headers(self) -> None:
        """Arm the deadline while the client owes a request's headers; disarm it once they are in."""
        if self.transport.is_closing():
            self._stop_timer()
        elif self.conn.their_state is h11.IDLE:
            if self._header_timer is None:
                self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)
        else:
            self._stop_timer()

    def _stop_timer(self) -> None:
        timer = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        if self.cycle is None or self.cycle.response_complete:
            log.warning("connection closed: request headers not received within %g s", self.header_timeout_s)
            if self.conn.our_state in (h11.IDLE, h11.DONE) and self.cycle is None:
                self.transport.write(_TIMEOUT_RESPONSE)
            self.transport.close()


def guarded_h11_protocol(
    *, header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S, max_connections: int = DEFAULT_MAX_CONNECTIONS
) -> type[GuardedH11Protocol]:
    """A GuardedH11Protocol class with these limits, for uvicorn's `http=` argument."""
    return type(
        "GuardedH11Protocol",
        (GuardedH11Protocol,),
        {"header_timeout_s": float(header_timeout_s), "max_connections": int(max_connections)},
    )
