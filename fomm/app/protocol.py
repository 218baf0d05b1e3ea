"""uvicorn's h11 protocol with a deadline for request headers (slow clients are cut off).

uvicorn bounds the wait between requests (``timeout_keep_alive``) and h11 bounds the size of
the headers, but nothing bounds how long they take: every byte resets the keep-alive timer, so a
client that sends its headers one byte a second holds a connection for as long as it likes.
:func:`bounded_h11` adds that bound: from the moment a connection opens, or a response on it
ends, the next request's headers must be complete within ``header_timeout_s``, else the
connection is closed. Bodies are bounded where they are read (``--upload-idle-s`` in
:func:`fomm.app.uploads.read_form`) and idle connections by ``timeout_keep_alive``.
"""

from __future__ import annotations

import asyncio
import logging

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("fomm.serve")
MAX_HEADER_BYTES = 32 * 1024  # h11's bound on an unfinished request head (its default: 16 KiB)
_BODY = b'{"error":{"code":"header_timeout","message":"the request headers came too slowly"}}'
TIMEOUT_RESPONSE = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_BODY), _BODY))


def bounded_h11(header_timeout_s: float) -> type[H11Protocol]:
    """An ``H11Protocol`` class (uvicorn's ``http=``) whose requests must send headers in time."""

    class BoundedH11Protocol(H11Protocol):
        _header_deadline: asyncio.TimerHandle | None = None

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
