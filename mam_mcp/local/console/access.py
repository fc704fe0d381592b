"""Who may use the console, and from where: one-time login links, sessions (a cookie and a page
key, both needed), and the Host/Origin checks that keep other web pages (and DNS rebinding) out.

The flow: `mam-mcp console` asks the daemon for a login link with the tenant key; the link holds a
one-time token (it works once, for `LOGIN_TOKEN_SECONDS`); opening it sets an HttpOnly,
SameSite=Strict session cookie and answers a small page holding the session's *page key* (in its
body, never in a URL: URLs land in the browser's history), whose script keeps the key in the
origin's storage and replaces itself with the console. The key names the session a request acts
in; the cookie must be a live session of the same scope (two tabs of one browser signed in twice
share the newer cookie and each keep working; signing out ends every session of the person).
Every API request must carry that key too: the `X-Console-Key` header (downloads are fetched with
it), a `key` query parameter only for the event stream (EventSource sends no header; it is no
navigation, so no history keeps its URL), and for the mail frame, whose src is a navigation, a
one-use ticket for that one view (`issue_frame_ticket`). A state-changing request must also come
from the console's own origin. Why both: browsers send a cookie to every port of its host, so a
server another local user runs on 127.0.0.1 can collect it from a person's browser; the page key is
handed out once, to the page at the console's own origin (port included), and no answer ever
repeats it. A header no other
web page can set also makes it the CSRF token. Sessions and tokens live in the daemon's memory
only: a restarted daemon signs everyone out. The page never sees an API key.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from starlette.requests import Request

from mam_mcp.local.auth.scope import KeyScope
from mam_mcp.loopback import LOOPBACK_NAMES

__all__ = [
    "KEY_HEADER",
    "KEY_PARAM",
    "LOGIN_TOKEN_SECONDS",
    "SESSION_SCOPE_KEY",
    "SESSION_SECONDS",
    "ConsoleAccess",
    "Session",
    "allowed_host",
    "allowed_origin",
    "cookie_name",
    "session_of",
]

LOGIN_TOKEN_SECONDS: Final = 300.0  # time to open the link `mam-mcp console --no-browser` printed
SESSION_SECONDS: Final = 12 * 3600.0
MAX_SESSIONS: Final = 64  # the oldest is signed out beyond this (each login makes one)
MAX_PENDING_TOKENS: Final = 32
FRAME_TICKET_SECONDS: Final = 60.0  # from the page asking to the frame loading: a moment
MAX_FRAME_TICKETS: Final = 64
KEY_HEADER: Final = "x-console-key"  # the session's page key, on every API request the page makes
KEY_PARAM: Final = "key"  # the same, in the query of what the page cannot fetch with a header
SESSION_SCOPE_KEY: Final = "mam_console_session"  # where the guard leaves the session in the ASGI scope


def cookie_name(port: int) -> str:
    """Cookies are not separated by port: two daemons on one machine must not overwrite each other's."""
    return f"mam_console_{port}"


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8")).digest()


@dataclass(slots=True)
class Session:
    scope: KeyScope
    page_key: str = field(repr=False)
    expires_at: float
    ended: bool = False  # signed out: open event streams close

    def live(self, now: float) -> bool:
        return not self.ended and self.expires_at >= now


class ConsoleAccess:
    """One-time login tokens and the sessions they open (in memory; secrets kept as digests)."""

    def __init__(self) -> None:
        self._now = time.monotonic
        self._tokens: dict[bytes, tuple[KeyScope, float]] = {}
        self._sessions: dict[bytes, Session] = {}
        self._by_key: dict[bytes, Session] = {}  # page key digest -> its session
        # One-use tickets for the mail frame's src (a URL: URLs land in the browser's history, so it
        # holds this, never the page key): digest -> (session, path, expiry).
        self._tickets: dict[bytes, tuple[Session, str, float]] = {}

    def issue_login_token(self, scope: KeyScope) -> str:
        """A secret that opens one session for `scope`, once, within LOGIN_TOKEN_SECONDS."""
        self._prune()
        while len(self._tokens) >= MAX_PENDING_TOKENS:
            self._tokens.pop(next(iter(self._tokens)))
        token = secrets.token_urlsafe(32)
        self._tokens[_digest(token)] = (scope, self._now() + LOGIN_TOKEN_SECONDS)
        return token

    def redeem(self, token: str) -> tuple[str, Session] | None:
        """Trade a login token for (session id, session); None if it is unknown, used or expired."""
        if not token or len(token) > 200:
            return None
        entry = self._tokens.pop(_digest(token), None)
        if entry is None or entry[1] < self._now():
            return None
        self._prune()
        while len(self._sessions) >= MAX_SESSIONS:
            self._forget(next(iter(self._sessions)))
        session_id = secrets.token_urlsafe(32)
        session = Session(entry[0], secrets.token_urlsafe(32), self._now() + SESSION_SECONDS)
        self._sessions[_digest(session_id)] = session
        self._by_key[_digest(session.page_key)] = session
        return session_id, session

    def session(self, session_id: str | None) -> Session | None:
        if not session_id or len(session_id) > 200:
            return None
        session = self._sessions.get(_digest(session_id))
        if session is None or not session.live(self._now()):
            return None
        return session

    def session_by_key(self, page_key: str | None) -> Session | None:
        """The live session whose page key this is (the digest lookup compares no secret bytes)."""
        if not page_key or len(page_key) > 200:
            return None
        session = self._by_key.get(_digest(page_key))
        if session is None or not session.live(self._now()):
            return None
        return session

    def issue_frame_ticket(self, session: Session, path: str) -> str:
        """A secret that loads `path` once, in `session`, within FRAME_TICKET_SECONDS."""
        self._prune()
        while len(self._tickets) >= MAX_FRAME_TICKETS:
            self._tickets.pop(next(iter(self._tickets)))
        ticket = secrets.token_urlsafe(24)
        self._tickets[_digest(ticket)] = (session, path, self._now() + FRAME_TICKET_SECONDS)
        return ticket

    def redeem_frame_ticket(self, ticket: str | None, path: str) -> Session | None:
        """The live session a ticket for `path` was issued in; the ticket is used up either way."""
        if not ticket or len(ticket) > 200:
            return None
        entry = self._tickets.pop(_digest(ticket), None)
        if entry is None or entry[1] != path or entry[2] < self._now() or not entry[0].live(self._now()):
            return None
        return entry[0]

    def end_scope(self, scope: KeyScope) -> None:
        """Sign out every session of `scope` (one person per daemon: sign-out means all their tabs)."""
        for digest, session in list(self._sessions.items()):
            if session.scope == scope:
                self._forget(digest)

    def end(self, session_id: str | None) -> None:
        if session_id:
            self._forget(_digest(session_id))

    def _forget(self, digest: bytes) -> None:
        session = self._sessions.pop(digest, None)
        if session is not None:
            session.ended = True
            self._by_key.pop(_digest(session.page_key), None)

    def _prune(self) -> None:
        now = self._now()
        for key in [k for k, (_, expires) in self._tokens.items() if expires < now]:
            del self._tokens[key]
        for key in [k for k, s in self._sessions.items() if s.expires_at < now]:
            self._forget(key)
        for key in [k for k, (_, _, expires) in self._tickets.items() if expires < now]:
            del self._tickets[key]


def _hosts(port: int) -> Iterable[str]:
    for name in LOOPBACK_NAMES:
        yield f"{name}:{port}"


def allowed_host(host_header: str | None, port: int) -> bool:
    """The Host a browser sends for the console itself: a loopback name with our port. Stricter than the
    daemon's guard (any loopback host): the console's cookie is worth more than an API call."""
    return host_header is not None and host_header.lower() in set(_hosts(port))


def allowed_origin(origin: str | None, port: int) -> bool:
    """The console's own origin, port included: a page on localhost:3000 is same-site for cookies
    (SameSite ignores ports), so only the exact origin may act. `None` is for the caller to judge."""
    return origin is not None and origin.lower() in {f"http://{host}" for host in _hosts(port)}


def session_of(request: Request) -> Session:
    """The session the guard admitted this request with."""
    session: Session = request.scope[SESSION_SCOPE_KEY]
    return session
