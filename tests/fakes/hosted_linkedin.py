"""The LinkedIn half of the strict fake hosted API (reference: references/linkedin.md + cheatsheet).

`linkedin_routes(fake)` returns the routes (mounted under /v1/linkedin by FakeHostedAPI) and
attaches the state as `fake.linkedin` (a `LinkedInFake`), which tests seed and inspect:

    li = fake.linkedin
    sid = li.add_session("Founder")
    li.add_profile("jane-smith", name="Jane Smith", headline="Founder at Acme")

Bodies are validated strictly (camelCase, no unknown fields, documented ranges, the 200-char AND
200-byte connection note), URNs in paths must arrive percent-encoded, and the documented errors
come from state: SESSION_NOT_FOUND, NO_SESSION_AVAILABLE, LINKEDIN_RATE_LIMITED (a paused
session), PROFILE_NOT_FOUND (strict slug match), TOO_MANY_SESSIONS, WEBHOOK_LIMIT_REACHED.
RATE_LIMITED and AUTH_LOCKOUT come from `fake.script(...)`.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from mam_mcp.local.timestamps import utc_now_iso
from tests.fakes.hosted_bodies import StrictBody
from tests.fakes.hosted_errors import FakeApiError
from tests.fakes.hosted_state import new_id

if TYPE_CHECKING:
    from tests.fakes.hosted_api import FakeHostedAPI

__all__ = ["LinkedInFake", "linkedin_of", "linkedin_routes"]

Intent = Literal["low", "medium", "high"]
Cadence = Literal["daily", "every_12h", "every_6h", "manual"]
_PROFILE_URL = re.compile(r"^https?://(?:[a-z]{2,3}\.)?linkedin\.com/in/([^/?#\s]+)/?", re.IGNORECASE)
_COMPANY_URL = re.compile(r"^https?://(?:[a-z]{2,3}\.)?linkedin\.com/company/([^/?#\s]+)/?", re.IGNORECASE)
DEFAULT_BUDGET = {
    "search_signal": 50,
    "search_history": 50,
    "profile_lookup": 30,
    "connection_request": 20,
    "send_message": 50,
    "engagement_poll": 50,
}


# --- strict bodies ----------------------------------------------------------------------------------------
class LoginBody(StrictBody):
    email: str = Field(min_length=3)
    password: str = Field(min_length=1)
    label: str | None = None


class VerifyBody(StrictBody):
    challenge_id: str
    pin: str = Field(min_length=4, max_length=8)
    label: str | None = None


class PollBody(StrictBody):
    challenge_id: str
    label: str | None = None


class ImportBody(StrictBody):
    li_at: str = Field(min_length=10)
    jsession_id: str = Field(min_length=5)
    label: str | None = None


class LookupBody(StrictBody):
    session_id: str | None = None
    profile_url: str


class ConnectionBody(StrictBody):
    session_id: str | None = None
    target: str = Field(min_length=2)
    message: str | None = None

    @model_validator(mode="after")
    def _note_fits(self) -> ConnectionBody:
        if self.message is not None and (len(self.message) > 200 or len(self.message.encode("utf-8")) > 200):
            raise ValueError("message must be at most 200 characters and 200 bytes")
        return self


class ContentSearchBody(StrictBody):
    session_id: str
    keyword: str = Field(min_length=1)
    date_posted: Literal["past-24h", "past-week", "past-month", "any"] | None = None
    count: int | None = Field(default=None, ge=1, le=25)


class SearchBody(StrictBody):
    query: str = Field(min_length=1)
    intent_description: str = Field(min_length=1)
    lookback: Literal["past-24h", "past-week", "past-month"] | None = None
    min_intent: Intent | None = None
    limit: int | None = Field(default=None, ge=1, le=100)
    session_id: str | None = None


class TargetBody(StrictBody):
    kind: Literal["profile", "company"]
    url: str
    label: str | None = None


class WatchlistItemBody(StrictBody):
    profile_url: str
    label: str | None = None


class SignalBody(StrictBody):
    kind: Literal[
        "keyword", "engagement", "job_change_watchlist", "connection_accepted", "message_received"
    ] = "keyword"
    name: str = Field(min_length=1)
    query: str | None = None
    intent_description: str = Field(min_length=1)
    target: TargetBody | None = None
    watchlist: list[WatchlistItemBody] | None = Field(default=None, min_length=1, max_length=500)
    cadence: Cadence | None = None
    webhook_url: str | None = Field(default=None, pattern=r"^https?://")
    filter_min_intent: Intent | None = None
    session_id: str | None = None

    @model_validator(mode="after")
    def _fields_of_kind(self) -> SignalBody:
        needed = {
            "keyword": self.query,
            "engagement": self.target,
            "job_change_watchlist": self.watchlist,
            "connection_accepted": self.session_id,
            "message_received": self.session_id,
        }[self.kind]
        if not needed:
            raise ValueError(f"kind {self.kind} is missing its required field")
        if self.target is not None:
            pattern = _PROFILE_URL if self.target.kind == "profile" else _COMPANY_URL
            if not pattern.match(self.target.url):
                raise ValueError(f"target.url is not a {self.target.kind} URL")
        for item in self.watchlist or ():
            if not _PROFILE_URL.match(item.profile_url):
                raise ValueError(f"watchlist entry {item.profile_url!r} is not a profile URL")
        return self


class SignalPatchBody(StrictBody):
    name: str | None = Field(default=None, min_length=1)
    query: str | None = None
    intent_description: str | None = None
    cadence: Cadence | None = None
    webhook_url: str | None = Field(default=None, pattern=r"^https?://")
    filter_min_intent: Intent | None = None
    enabled: bool | None = None
    session_id: str | None = None


class WatchlistAddBody(StrictBody):
    entries: list[WatchlistItemBody] = Field(min_length=1, max_length=500)


class MessageBody(StrictBody):
    session_id: str
    text: str = Field(min_length=1)
    recipient: str | None = None
    conversation_urn: str | None = None

    @model_validator(mode="after")
    def _one_target(self) -> MessageBody:
        if (self.recipient is None) == (self.conversation_urn is None):
            raise ValueError("pass exactly one of recipient or conversationUrn")
        return self


# --- state ------------------------------------------------------------------------------------------------
@dataclass
class LinkedInFake:
    """LinkedIn state of one fake; tests seed it and read what was sent."""

    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    session_cap: int = 10
    webhook_limit: int = 100
    budget: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_BUDGET))
    usage: dict[str, dict[str, int]] = field(default_factory=dict)
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)  # slug -> profile
    signals: dict[str, dict[str, Any]] = field(default_factory=dict)
    matches: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    pending_matches: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # found by the next run
    deliveries: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    watchlists: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    searches: dict[str, dict[str, Any]] = field(default_factory=dict)
    search_results: list[dict[str, Any]] = field(default_factory=list)  # what the next search finds
    search_diagnostics: dict[str, Any] | None = None
    content_posts: list[dict[str, Any]] = field(default_factory=list)
    author_posts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # slug -> posts
    comments: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # post URN -> comments
    reactions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    conversations: dict[str, list[dict[str, Any]]] = field(
        default_factory=dict
    )  # session id -> conversations
    thread_messages: dict[str, list[dict[str, Any]]] = field(
        default_factory=dict
    )  # conversation URN -> messages
    invitations: list[dict[str, Any]] = field(default_factory=list)
    sent_messages: list[dict[str, Any]] = field(default_factory=list)
    # Logins: the fake accepts `password`; `challenge` picks what LinkedIn asks for.
    password: str = "correct horse battery staple"
    challenge: Literal["none", "pin", "mobile"] = "none"
    pin: str = "246810"
    polls_before_approval: int = 1
    challenges: dict[str, dict[str, Any]] = field(default_factory=dict)
    signal_secrets: dict[str, str | None] = field(default_factory=dict)  # kept apart: never in a GET
    _rotation: int = 0

    # --- seeding --------------------------------------------------------------------------------------
    def add_session(self, label: str | None = None, *, status: str = "active") -> str:
        session_id = "ses_" + new_id()[:12]
        self.sessions[session_id] = {
            "id": session_id,
            "label": label,
            "status": status,
            "createdAt": utc_now_iso(),
            "lastUsedAt": None,
        }
        return session_id

    def add_profile(
        self, slug: str, *, name: str, headline: str = "", role: str | None = None, company: str | None = None
    ) -> dict[str, Any]:
        profile = {
            "name": name,
            "profileId": "ACoA" + new_id()[:16],
            "publicIdentifier": slug,
            "headline": headline,
            "profileUrl": f"https://www.linkedin.com/in/{slug}/",
            "role": role,
            "company": company,
        }
        self.profiles[slug] = profile
        return profile

    def add_signal(
        self,
        name: str = "seeded",
        *,
        kind: str = "keyword",
        query: str | None = "outbound is broken",
        webhook_url: str | None = None,
    ) -> dict[str, Any]:
        signal = self._new_signal(
            {
                "kind": kind,
                "name": name,
                "query": query,
                "webhookUrl": webhook_url,
                "intentDescription": "Founders complaining; skip vendors.",
                "cadence": "every_6h",
                "filterMinIntent": "medium",
                "sessionId": None,
            }
        )
        return signal

    # --- behaviour --------------------------------------------------------------------------------------
    def route_session(self, session_id: str | None) -> dict[str, Any]:
        """The pinned session (404/429 if unusable) or the least-used active one (auto-distribute)."""
        if session_id is not None:
            session = self.sessions.get(session_id)
            if session is None or session["status"] == "revoked":
                raise FakeApiError(404, "SESSION_NOT_FOUND", f"LinkedIn session {session_id} not found")
            if session["status"] == "rate_limited":
                raise FakeApiError(
                    429,
                    "LINKEDIN_RATE_LIMITED",
                    f"LinkedIn rate-limited session {session_id}; it is paused for 24 h",
                )
            return session
        active = [s for s in self.sessions.values() if s["status"] == "active"]
        if not active:
            raise FakeApiError(
                429,
                "NO_SESSION_AVAILABLE",
                "every connected LinkedIn session is rate-limited or out of daily budget",
            )
        self._rotation += 1
        return active[self._rotation % len(active)]

    def spend(self, session: dict[str, Any], action: str) -> None:
        counts = self.usage.setdefault(session["id"], {})
        counts[action] = counts.get(action, 0) + 1
        session["lastUsedAt"] = utc_now_iso()

    def _new_signal(self, body: dict[str, Any]) -> dict[str, Any]:
        signal_id = "sig_" + new_id()[:12]
        signal = {
            "id": signal_id,
            **{k: v for k, v in body.items() if k != "watchlist"},
            "enabled": True,
            "lastPolledAt": None,
            "nextPollAt": None,
            "lastError": None,
            "matchesCount": 0,
            "createdAt": utc_now_iso(),
            "webhookSecret": None,
        }
        if body.get("watchlist"):
            self.watchlists[signal_id] = [
                {"id": "wle_" + new_id()[:10], **item} for item in body["watchlist"]
            ]
            signal["watchlistCount"] = len(body["watchlist"])
        self.signals[signal_id] = signal
        self.matches[signal_id] = []
        self.deliveries[signal_id] = []
        return signal

    def new_session_allowed(self) -> None:
        if len([s for s in self.sessions.values() if s["status"] != "revoked"]) >= self.session_cap:
            raise FakeApiError(
                403, "TOO_MANY_SESSIONS", f"the tenant already has {self.session_cap} LinkedIn sessions"
            )


def linkedin_of(fake: FakeHostedAPI) -> LinkedInFake:
    state: LinkedInFake = fake.linkedin  # type: ignore[attr-defined]
    return state


def _slug(url: str) -> str | None:
    found = _PROFILE_URL.match(url)
    return found.group(1).lower() if found else None


# --- routes -----------------------------------------------------------------------------------------------
class _LinkedInRoutes:
    def __init__(self, fake: FakeHostedAPI, state: LinkedInFake) -> None:
        self.fake = fake
        self.li = state

    def routes(self) -> list[BaseRoute]:
        r = self.fake.route
        sig = "/signals/{signal_id}"
        return [
            r("POST", "/sessions", self.login),
            r("POST", "/sessions/verify", self.verify),
            r("POST", "/sessions/poll", self.poll),
            r("POST", "/sessions/import", self.import_cookies),
            r("GET", "/sessions", self.list_sessions),
            r("GET", "/sessions/utilization", self.utilization),
            r("DELETE", "/sessions/{session_id}", self.revoke_session),
            r("POST", "/profiles/lookup", self.lookup),
            r("POST", "/connections", self.connect),
            r("POST", "/search/content", self.content_search),
            r("POST", "/searches", self.run_search),
            r("GET", "/searches", self.list_searches, query=("limit",)),
            r("GET", "/searches/{search_id}", self.get_search),
            r("POST", "/signals", self.create_signal),
            r("GET", "/signals", self.list_signals),
            r("GET", sig, self.get_signal),
            r("PATCH", sig, self.update_signal),
            r("DELETE", sig, self.delete_signal),
            r("POST", sig + "/run", self.run_signal),
            r("GET", sig + "/matches", self.list_matches, query=("limit", "sinceId")),
            r("GET", sig + "/deliveries", self.list_deliveries),
            r("POST", sig + "/test-webhook", self.test_webhook),
            r("GET", sig + "/watchlist", self.list_watchlist),
            r("POST", sig + "/watchlist", self.add_watchlist),
            r("DELETE", sig + "/watchlist/{entry_id}", self.remove_watchlist),
            r("GET", "/posts/by-author", self.posts_by_author, query=("sessionId", "profileUrl", "count")),
            r("GET", "/posts/{urn}/comments", self.post_comments, query=("sessionId", "count")),
            r("GET", "/posts/{urn}/reactions", self.post_reactions, query=("sessionId", "count")),
            r("POST", "/messages", self.send_message),
            r("GET", "/conversations", self.list_conversations, query=("sessionId",)),
            r("GET", "/conversations/{urn}/messages", self.conversation_messages, query=("sessionId",)),
        ]

    # --- helpers ------------------------------------------------------------------------------------------
    def _signal(self, request: Request) -> dict[str, Any]:
        signal = self.li.signals.get(request.path_params["signal_id"])
        if signal is None:
            raise FakeApiError(404, "NOT_FOUND", "signal not found")
        return signal

    @staticmethod
    def _public(signal: dict[str, Any]) -> dict[str, Any]:
        return {**signal, "webhookSecret": None}  # the secret is returned once, on create

    def _required_session(self, request: Request) -> dict[str, Any]:
        session_id = request.query_params.get("sessionId")
        if not session_id:
            self.fake.violation(f"{request.method} {request.url.path}: sessionId is required")
            raise FakeApiError(
                400,
                "VALIDATION_ERROR",
                "sessionId is required",
                details=[{"path": "sessionId", "message": "required"}],
            )
        return self.li.route_session(session_id)

    def _count(self, request: Request, default: int, high: int) -> int:
        raw = request.query_params.get("count")
        if raw is None:
            return default
        if not raw.isdigit() or not 1 <= int(raw) <= high:
            raise FakeApiError(400, "VALIDATION_ERROR", f"count must be 1..{high}")
        return int(raw)

    def _encoded_urn(self, request: Request) -> str:
        """The URN path segment; it must arrive percent-encoded (the reference says URL-encode it)."""
        raw = request.scope.get("raw_path", b"").decode("latin-1")
        if "urn:li:" in raw or "urn%3Ali%3A" not in raw.replace("%3a", "%3A"):
            self.fake.violation(
                f"{request.method} {request.url.path}: the URN in the path is not URL-encoded"
            )
            raise FakeApiError(400, "VALIDATION_ERROR", "URL-encode the URN in the path")
        return str(request.path_params["urn"])

    # --- sessions -------------------------------------------------------------------------------------------
    async def login(self, request: Request) -> Response:
        body = await self.fake.parse_body(request, LoginBody)
        self.li.new_session_allowed()
        if body.password != self.li.password:
            return JSONResponse(
                {"ok": False, "error": "LinkedIn rejected the email or password"}, status_code=400
            )
        if self.li.challenge == "none":
            return self._connected(body.label)
        challenge_id = "chl_" + new_id()[:10]
        self.li.challenges[challenge_id] = {"type": self.li.challenge, "label": body.label, "polls": 0}
        return JSONResponse(
            {
                "ok": False,
                "challenge": True,
                "challengeId": challenge_id,
                "challengeType": self.li.challenge,
                "verifyEndpoint": "/v1/linkedin/sessions/verify",
                "pollEndpoint": "/v1/linkedin/sessions/poll",
                "expiresAt": utc_now_iso(),
            }
        )

    def _connected(self, label: str | None) -> JSONResponse:
        session_id = self.li.add_session(label)
        session = self.li.sessions[session_id]
        return JSONResponse(
            {"ok": True, "sessionId": session_id, "label": label, "createdAt": session["createdAt"]}
        )

    async def verify(self, request: Request) -> Response:
        body = await self.fake.parse_body(request, VerifyBody)
        challenge = self.li.challenges.get(body.challenge_id)
        if challenge is None:
            raise FakeApiError(404, "NOT_FOUND", "challenge not found or expired")
        if body.pin != self.li.pin:
            return JSONResponse({"ok": False, "error": "wrong PIN"}, status_code=400)
        del self.li.challenges[body.challenge_id]
        return self._connected(body.label or challenge["label"])

    async def poll(self, request: Request) -> Response:
        body = await self.fake.parse_body(request, PollBody)
        challenge = self.li.challenges.get(body.challenge_id)
        if challenge is None:
            raise FakeApiError(404, "NOT_FOUND", "challenge not found or expired")
        challenge["polls"] += 1
        if challenge["polls"] <= self.li.polls_before_approval:
            return JSONResponse({"ok": False, "pending": True}, status_code=202)
        del self.li.challenges[body.challenge_id]
        return self._connected(body.label or challenge["label"])

    async def import_cookies(self, request: Request) -> Response:
        body = await self.fake.parse_body(request, ImportBody)
        self.li.new_session_allowed()
        if not body.li_at.startswith("AQE"):
            return JSONResponse({"ok": False, "error": "LinkedIn rejected the cookies"}, status_code=400)
        return self._connected(body.label)

    async def list_sessions(self, request: Request) -> Response:
        live = [s for s in self.li.sessions.values() if s["status"] != "revoked"]
        return JSONResponse({"sessions": live})

    async def utilization(self, request: Request) -> Response:
        rows = []
        for s in self.li.sessions.values():
            if s["status"] == "revoked":
                continue
            counts = self.li.usage.get(s["id"], {})
            limited = s["status"] == "rate_limited"
            rows.append(
                {
                    "sessionId": s["id"],
                    "label": s["label"],
                    "status": s["status"],
                    "rateLimitedUntil": utc_now_iso() if limited else None,
                    "rateLimitReason": "linkedin_429" if limited else None,
                    "counts": counts,
                    "remaining": {k: max(0, v - counts.get(k, 0)) for k, v in self.li.budget.items()},
                }
            )
        return JSONResponse({"ok": True, "budget": self.li.budget, "sessions": rows})

    async def revoke_session(self, request: Request) -> Response:
        session = self.li.sessions.get(request.path_params["session_id"])
        if session is None or session["status"] == "revoked":
            raise FakeApiError(404, "SESSION_NOT_FOUND", "LinkedIn session not found")
        session["status"] = "revoked"
        return JSONResponse({"ok": True})

    # --- profiles, connections, raw search ------------------------------------------------------------------
    async def lookup(self, request: Request) -> Response:
        body = await self.fake.parse_body(request, LookupBody)
        session = self.li.route_session(body.session_id)
        slug = _slug(body.profile_url)
        if slug is None:
            raise FakeApiError(400, "VALIDATION_ERROR", "profileUrl is not a profile URL")
        profile = self.li.profiles.get(slug)
        self.li.spend(session, "profile_lookup")
        if profile is None:
            raise FakeApiError(404, "PROFILE_NOT_FOUND", f"no profile with the slug {slug!r}")
        return JSONResponse({"ok": True, "profile": profile})

    async def connect(self, request: Request) -> Response:
        body = await self.fake.parse_body(request, ConnectionBody)
        session = self.li.route_session(body.session_id)
        self.li.spend(session, "connection_request")
        self.li.invitations.append(
            {"sessionId": session["id"], "target": body.target, "message": body.message}
        )
        return JSONResponse({"ok": True, "status": "pending"})

    async def content_search(self, request: Request) -> Response:
        body = await self.fake.parse_body(request, ContentSearchBody)
        session = self.li.route_session(body.session_id)
        self.li.spend(session, "search_signal")
        return JSONResponse({"posts": self.li.content_posts[: body.count or 10]})

    # --- historical searches ------------------------------------------------------------------------------------
    async def run_search(self, request: Request) -> Response:
        body = await self.fake.parse_body(request, SearchBody)
        session = self.li.route_session(body.session_id)
        self.li.spend(session, "search_history")
        results = self.li.search_results[: body.limit or 50]
        diagnostics = self.li.search_diagnostics or {
            "candidatesExamined": len(results),
            "candidatesWithEmptyBody": 0,
            "rejectedByTextTriage": 0,
            "rejectedByProfileLookup": 0,
            "rejectedByMinIntent": 0,
            "scraperHealthHint": "ok",
        }
        search = {
            "id": "srch_" + new_id()[:12],
            "sessionId": session["id"],
            "query": body.query,
            "lookback": body.lookback or "past-week",
            "minIntent": body.min_intent,
            "intentDescription": body.intent_description,
            "resultCount": len(results),
            "tookMs": 12_345,
            "errorCode": None,
            "errorMessage": None,
            "createdAt": utc_now_iso(),
        }
        self.li.searches[search["id"]] = {"search": search, "results": results}
        return JSONResponse({"search": search, "results": results, "diagnostics": diagnostics})

    async def list_searches(self, request: Request) -> Response:
        limit = request.query_params.get("limit", "20")
        if not limit.isdigit() or not 1 <= int(limit) <= 100:
            raise FakeApiError(400, "VALIDATION_ERROR", "limit must be 1..100")
        items = [entry["search"] for entry in reversed(self.li.searches.values())]
        return JSONResponse({"searches": items[: int(limit)]})

    async def get_search(self, request: Request) -> Response:
        entry = self.li.searches.get(request.path_params["search_id"])
        if entry is None:
            raise FakeApiError(404, "NOT_FOUND", "search not found")
        return JSONResponse(entry)

    # --- signals ----------------------------------------------------------------------------------------------
    async def create_signal(self, request: Request) -> Response:
        body = await self.fake.parse_body(request, SignalBody)
        if body.session_id is not None:
            self.li.route_session(body.session_id)
        with_hooks = sum(1 for s in self.li.signals.values() if s.get("webhookUrl"))
        if body.webhook_url and with_hooks >= self.li.webhook_limit:
            raise FakeApiError(
                403, "WEBHOOK_LIMIT_REACHED", f"the tenant has {self.li.webhook_limit} webhooks"
            )
        wire = body.model_dump(by_alias=True, exclude_none=True)
        wire.setdefault("cadence", "daily")
        wire.setdefault("filterMinIntent", "medium")
        signal = self.li._new_signal(wire)
        if "target" in wire:
            signal["target"] = {
                **wire["target"],
                "label": wire["target"]["url"].rstrip("/").rsplit("/", 1)[-1],
            }
        secret = "whsec_" + secrets.token_hex(16) if body.webhook_url else None
        self.li.signal_secrets[signal["id"]] = secret
        return JSONResponse({"signal": {**self._public(signal), "webhookSecret": secret}}, status_code=201)

    async def list_signals(self, request: Request) -> Response:
        return JSONResponse({"signals": [self._public(s) for s in self.li.signals.values()]})

    async def get_signal(self, request: Request) -> Response:
        return JSONResponse({"signal": self._public(self._signal(request))})

    async def update_signal(self, request: Request) -> Response:
        signal = self._signal(request)
        body = await self.fake.parse_body(request, SignalPatchBody)
        signal.update(body.model_dump(by_alias=True, exclude_unset=True))
        return JSONResponse({"signal": self._public(signal)})

    async def delete_signal(self, request: Request) -> Response:
        signal = self._signal(request)
        del self.li.signals[signal["id"]]
        return JSONResponse({"ok": True})

    async def run_signal(self, request: Request) -> Response:
        signal = self._signal(request)
        session = self.li.route_session(signal.get("sessionId"))
        self.li.spend(session, "search_signal")
        found = self.li.pending_matches.pop(signal["id"], [])
        self.li.matches[signal["id"]].extend(found)
        signal["matchesCount"] = len(self.li.matches[signal["id"]])
        signal["lastPolledAt"] = utc_now_iso()
        return JSONResponse({"result": {"ok": True, "newMatches": len(found), "candidatesExamined": 10}})

    async def list_matches(self, request: Request) -> Response:
        signal = self._signal(request)
        limit = request.query_params.get("limit", "50")
        if not limit.isdigit() or not 1 <= int(limit) <= 100:
            raise FakeApiError(400, "VALIDATION_ERROR", "limit must be 1..100")
        matches = list(reversed(self.li.matches[signal["id"]]))
        since = request.query_params.get("sinceId")
        if since is not None:
            ids = [m["id"] for m in matches]
            matches = matches[: ids.index(since)] if since in ids else matches
        return JSONResponse({"matches": matches[: int(limit)]})

    async def list_deliveries(self, request: Request) -> Response:
        return JSONResponse({"deliveries": self.li.deliveries[self._signal(request)["id"]]})

    async def test_webhook(self, request: Request) -> Response:
        signal = self._signal(request)
        if not signal.get("webhookUrl"):
            raise FakeApiError(400, "VALIDATION_ERROR", "this signal has no webhookUrl")
        delivery = {
            "id": "dlv_" + new_id()[:10],
            "matchId": None,
            "status": "delivered",
            "attempts": 1,
            "responseStatus": 200,
            "error": None,
            "createdAt": utc_now_iso(),
            "deliveredAt": utc_now_iso(),
        }
        self.li.deliveries[signal["id"]].insert(0, delivery)
        return JSONResponse({"ok": True, "status": 200})

    async def list_watchlist(self, request: Request) -> Response:
        signal = self._signal(request)
        return JSONResponse({"entries": self.li.watchlists.get(signal["id"], [])})

    async def add_watchlist(self, request: Request) -> Response:
        signal = self._signal(request)
        body = await self.fake.parse_body(request, WatchlistAddBody)
        entries = self.li.watchlists.setdefault(signal["id"], [])
        for item in body.entries:
            if not _PROFILE_URL.match(item.profile_url):
                raise FakeApiError(400, "VALIDATION_ERROR", f"{item.profile_url!r} is not a profile URL")
        if len(entries) + len(body.entries) > 500:
            raise FakeApiError(400, "VALIDATION_ERROR", "a watchlist holds at most 500 entries")
        added = [
            {"id": "wle_" + new_id()[:10], **item.model_dump(by_alias=True, exclude_none=True)}
            for item in body.entries
        ]
        entries.extend(added)
        return JSONResponse({"entries": added}, status_code=201)

    async def remove_watchlist(self, request: Request) -> Response:
        signal = self._signal(request)
        entries = self.li.watchlists.get(signal["id"], [])
        kept = [e for e in entries if e["id"] != request.path_params["entry_id"]]
        if len(kept) == len(entries):
            raise FakeApiError(404, "NOT_FOUND", "watchlist entry not found")
        self.li.watchlists[signal["id"]] = kept
        return JSONResponse({"ok": True})

    # --- posts --------------------------------------------------------------------------------------------------
    async def posts_by_author(self, request: Request) -> Response:
        session = self._required_session(request)
        url = request.query_params.get("profileUrl", "")
        found = _PROFILE_URL.match(url) or _COMPANY_URL.match(url)
        if found is None:
            raise FakeApiError(400, "VALIDATION_ERROR", "profileUrl must be a profile or company URL")
        self.li.spend(session, "engagement_poll")
        posts = self.li.author_posts.get(found.group(1).lower(), [])
        return JSONResponse({"posts": posts[: self._count(request, 10, 100)]})

    async def post_comments(self, request: Request) -> Response:
        urn = self._encoded_urn(request)
        session = self._required_session(request)
        self.li.spend(session, "engagement_poll")
        return JSONResponse({"comments": self.li.comments.get(urn, [])[: self._count(request, 20, 100)]})

    async def post_reactions(self, request: Request) -> Response:
        urn = self._encoded_urn(request)
        session = self._required_session(request)
        self.li.spend(session, "engagement_poll")
        return JSONResponse({"reactions": self.li.reactions.get(urn, [])[: self._count(request, 100, 100)]})

    # --- DMs ----------------------------------------------------------------------------------------------------
    async def send_message(self, request: Request) -> Response:
        body = await self.fake.parse_body(request, MessageBody)
        session = self.li.route_session(body.session_id)
        self.li.spend(session, "send_message")
        conversation = (
            body.conversation_urn or f"urn:li:msg_conversation:(urn:li:fsd_profile:ACoA{new_id()[:8]},2-x)"
        )
        sent = {
            "ok": True,
            "messageUrn": "urn:li:msg_message:" + new_id()[:12],
            "conversationUrn": conversation,
            "backendConversationUrn": conversation,
            "deliveredAt": utc_now_iso(),
        }
        self.li.sent_messages.append(
            {
                "sessionId": session["id"],
                "text": body.text,
                "recipient": body.recipient,
                "conversationUrn": body.conversation_urn,
            }
        )
        return JSONResponse(sent)

    async def list_conversations(self, request: Request) -> Response:
        session = self._required_session(request)
        return JSONResponse({"conversations": self.li.conversations.get(session["id"], [])})

    async def conversation_messages(self, request: Request) -> Response:
        urn = self._encoded_urn(request)
        self._required_session(request)
        if urn not in self.li.thread_messages:
            raise FakeApiError(404, "NOT_FOUND", "conversation not found")
        return JSONResponse({"messages": self.li.thread_messages[urn]})


def linkedin_routes(fake: FakeHostedAPI) -> list[BaseRoute]:
    """The LinkedIn routes (relative to /v1/linkedin); the state goes on `fake.linkedin`."""
    state = LinkedInFake()
    fake.linkedin = state  # type: ignore[attr-defined]
    return _LinkedInRoutes(fake, state).routes()
