"""uvicorn's h11 protocol with a deadline for request headers (slow clients are cut off).

uvicorn bounds the wait between requests (``timeout_keep_alive``) and h11 bounds the size of
the headers, but nothing bounds how long they take: every byte resets the keep-alive timer, so a
client that sends its headers one byte a second holds a connection for as long as it likes.
:func:`bounded_h11` adds that bound: from the moment a connection opens, or a response on it
ends, the next request's headers must be complete within ``header_timeout_s``, else the
connection is closed. Bodies are bounded where they are read (idle time, minimum rate and
total time in :func:`fomm.app.uploads.read_form`) and idle connections by ``timeout_keep_alive``.

It also bounds the size of a request head however it arrives: h11's own bound
(``h11_max_incomplete_event_size``) applies only while the head is unfinished, so a 100 KB head
sent in one write would pass it; here every request head over :data:`MAX_HEADER_BYTES`, whole or
not, is answered ``431`` and the connection closed.
"""

from __future__ import annotations

import asyncio
import logging

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("fomm.serve")
MAX_HEADER_BYTES = 32 * 1024  # h11's bound on an unfinished request head (its default: 16 KiB)
# WebSocket: the largest message (the live page's images: fomm.app.live.MAX_MESSAGE, 8 MiB) and
# how many may wait unread per connection (uvicorn's defaults: 16 MiB and 32, i.e. 512 MiB)
WS_MAX_MESSAGE = 8 * 2**20 + 4096
WS_MAX_QUEUE = 2
_BODY = b'{"error":{"code":"header_timeout","message":"the request headers came too slowly"}}'
TIMEOUT_RESPONSE = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_BODY), _BODY))
_BIG = (b'{"error":{"code":"headers_too_large","message":"the request headers are larger than '
        b'%d KiB"}}' % (MAX_HEADER_BYTES // 1024))
TOO_LARGE_RESPONSE = (b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                      b"content-type: application/json\r\ncontent-length: %d\r\n"
                      b"connection: close\r\n\r\n%s" % (len(_BIG), _BIG))


def head_size(event: h11.Request) -> int:
    """The bytes of a request head as sent: request line, header lines, blank line."""
    size = len(event.method) + len(event.target) + 13  # " ", " HTTP/1.1\r\n"
    return size + sum(len(name) + len(value) + 4 for name, value in event.headers.raw_items()) + 2


class _HeadLimit:
    """An ``h11.Connection`` whose request heads are bounded in size, whole or in pieces: one
    over ``limit`` calls ``refuse`` and reads as ``NEED_DATA`` (the protocol then waits for a
    connection that ``refuse`` has closed)."""

    def __init__(self, conn: h11.Connection, limit: int, refuse) -> None:
        self._conn, self._limit, self._refuse = conn, limit, refuse

    def next_event(self):
        try:
            event = self._conn.next_event()
        except h11.RemoteProtocolError as err:
            if err.error_status_hint != 431:  # malformed: uvicorn answers 400
                raise
            self._refuse()
            return h11.NEED_DATA
        if isinstance(event, h11.Request) and head_size(event) > self._limit:
            self._refuse()
            return h11.NEED_DATA
        return event

    def __getattr__(self, name: str):
        return getattr(self._conn, name)


def bounded_h11(header_timeout_s: float) -> type[H11Protocol]:
    """An ``H11Protocol`` class (uvicorn's ``http=``) whose requests must send headers in time."""

    class BoundedH11Protocol(H11Protocol):
        _header_deadline: asyncio.TimerHandle | None = None

        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.conn = _HeadLimit(self.conn, MAX_HEADER_BYTES, self._too_large)

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def handle_events(self) -> None:
            super().handle_events()
            if self.conn.their_state is not h11.IDLE:  # the request line and headers are in
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
                self._arm()  # keep-alive: the next request's headers have the same bound

        def _arm(self) -> None:
            self._disarm()
            self._header_deadline = self.loop.call_later(header_timeout_s, self._too_slow)

        def _disarm(self) -> None:
            if self._header_deadline is not None:
                self._header_deadline.cancel()
                self._header_deadline = None

        def _too_large(self) -> None:
            self._disarm()
            if not self.transport.is_closing():
                log.info("connection from %s cut: request headers over %d bytes",
                         self.client[0] if self.client else "?", MAX_HEADER_BYTES)
                self.transport.write(TOO_LARGE_RESPONSE)
                self.transport.close()

        def _too_slow(self) -> None:
            self._header_deadline = None
            if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
                return
            if self.conn.trailing_data[0]:  # a request began but its headers did not end
                log.info("connection from %s cut: headers not complete in %g s",
                         self.client[0] if self.client else "?", header_timeout_s)
                self.transport.write(TIMEOUT_RESPONSE)  # raw: h11 answers only whole requests
            self.transport.close()

    return BoundedH11Protocol
