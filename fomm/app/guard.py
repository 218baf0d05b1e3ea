"""The app's front gate (ASGI middleware): known Host, same-origin browsers, bearer token, headers.

Every HTTP request and WebSocket handshake passes through :class:`Guard` before any route:

- ``Host`` must name this server: the bind address, ``localhost``, a loopback address or an
  ``--allowed-host`` value (DNS rebinding sends the attacker's name). A WebSocket handshake
  without ``Origin`` is not from a browser and skips this check. Behind a wildcard bind
  (``0.0.0.0``) without ``--allowed-host`` any name is accepted; the token is the guard there.
- A browser request from another site is refused: ``Sec-Fetch-Site`` other than ``same-origin``
  or ``none``, or an ``Origin`` whose host is not the request's ``Host``.
- With a token, every request but the page and its static files needs
  ``Authorization: Bearer TOKEN``; ``/healthz`` answers without it, up or down and no more.
  Browsers cannot set headers on a WebSocket, so there the
  token comes as the subprotocol ``bearer.TOKEN`` next to ``fomm``, and ``fomm`` is accepted.
- Every HTTP response gets ``X-Content-Type-Options``, ``X-Frame-Options``, a CSP and
  ``Referrer-Policy``.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LOOPBACK = ("127.0.0.1", "localhost", "::1")
WILDCARD = ("0.0.0.0", "::", "")
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9._~-]{16,}")  # also a valid WebSocket subprotocol
PUBLIC_PATHS = ("/", "/favicon.ico", "/device")  # the page must load to ask for the token
PUBLIC_PREFIXES = ("/static/", "/device/")  # /device/: static files, animated in the browser
# answered without the token (liveness probes) but told so: scope[AUTHORIZED] is False then
OPEN_PATHS = ("/healthz",)
AUTHORIZED = "fomm.authorized"
SUBPROTOCOL = "fomm"
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; img-src 'self' blob: data:; "
        b"media-src 'self' blob:; "
        b"style-src 'self' 'unsafe-inline'; connect-src 'self'; object-src 'none'; "
        b"base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
    ),
]


def check_token(token: str) -> str:
    """The token, or ValueError: at least 16 of ``A-Z a-z 0-9 . _ ~ -``."""
    if not TOKEN_PATTERN.fullmatch(token):
        raise ValueError(
            "the token must be at least 16 characters from A-Z a-z 0-9 . _ ~ - "
            "(make one: python -c 'import secrets; print(secrets.token_urlsafe())')"
        )
    return token


def host_name(value: str) -> str:
    """``example.com:8000`` → ``example.com``; ``[::1]:8000`` → ``::1``; lower case."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class Guard:
    """ASGI middleware; see the module docstring.

    Args:
        app: the wrapped application.
        bind: the address the server listens on.
        allowed_hosts: more names the ``Host`` header may carry.
        token: the bearer token, or None for none.
    """

    def __init__(
        self,
        app: ASGIApp,
        bind: str = "127.0.0.1",
        allowed_hosts: Iterable[str] = (),
        token: str | None = None,
    ) -> None:
        self.app, self.token = app, token
        extra = {host_name(h) for h in allowed_hosts}
        bind = host_name(bind)
        self.any_host = bind in WILDCARD and not extra
        self.hosts = {*LOOPBACK, bind, *extra}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        refusal = self._refusal(scope, headers)
        if kind == "websocket":
            if refusal:
                await send({"type": "websocket.close", "code": 1008, "reason": refusal[2]})
                return
            await self.app(scope, receive, self._accept_subprotocol(scope, send))
            return
        if refusal:
            await _send_error(send, *refusal)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _refusal(self, scope: Scope, headers: dict[str, str]) -> tuple[int, str, str] | None:
        """(status, code, message) when the request must be refused, else None."""
        host = headers.get("host", "")
        origin = headers.get("origin")
        # browsers send Origin on every WebSocket handshake: without one it is not a browser,
        # and DNS rebinding needs a browser
        browser = scope["type"] == "http" or origin is not None
        if browser and not self.any_host and host_name(host) not in self.hosts:
            return (
                421,
                "unknown_host",
                (
                    "this server does not answer to that Host name; start "
                    "it with --allowed-host NAME to allow it"
                ),
            )
        site = headers.get("sec-fetch-site")
        cross_origin = origin is not None and (
            origin == "null" or urlsplit(origin).netloc.lower() != host.strip().lower()
        )
        if (site is not None and site not in ("same-origin", "none")) or cross_origin:
            return 403, "cross_site", "requests from other web sites are refused"
        if self.token is None or _is_public(scope):
            return None
        offered = _subprotocols(headers)
        given = headers.get("authorization", "")
        candidates = [given[7:].strip()] if given[:7].lower() == "bearer " else []
        candidates += [p[7:] for p in offered if p.startswith("bearer.")]
        if not any(hmac.compare_digest(c.encode(), self.token.encode()) for c in candidates):
            if scope["type"] == "http" and scope.get("path") in OPEN_PATHS:
                scope[AUTHORIZED] = False
                return None
            return 401, "unauthorized", "this server needs its token: Authorization: Bearer TOKEN"
        return None

    def _accept_subprotocol(self, scope: Scope, send: Send) -> Send:
        """Accept the ``fomm`` subprotocol when the client offered it (browsers require it)."""
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        offered = SUBPROTOCOL in _subprotocols(headers)

        async def wrapped(message: Message) -> None:
            if message["type"] == "websocket.accept" and offered and not message.get("subprotocol"):
                message = {**message, "subprotocol": SUBPROTOCOL}
            await send(message)

        return wrapped


def _is_public(scope: Scope) -> bool:
    path = scope.get("path", "")
    return scope["type"] == "http" and (path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES))


def _subprotocols(headers: dict[str, str]) -> list[str]:
    return [p.strip() for p in headers.get("sec-websocket-protocol", "").split(",") if p.strip()]


async def _send_error(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *SECURITY_HEADERS,
    ]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
