"""Resource namespaces for the hosted LinkedIn surface: `client.linkedin.signals.create(...)`.

Local checks run before any request, so bad input never spends LinkedIn quota: connection
notes (<= 200 characters AND <= 200 UTF-8 bytes), count/limit ranges, profile/company URL
shapes, and post/conversation URNs (percent-encoded as one path segment). Searches and
`signals/:id/run` are synchronous (10-15 s, sometimes much more) and get LONG_TIMEOUT.
Requests that spend quota or act on LinkedIn go out as sends (Idempotency-Key, shielded,
never retried); when their outcome is unknown the error says what may already have happened.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from mam_mcp.client.errors import SendOutcomeUnknown, ValidationFailed
from mam_mcp.client.http import LONG_TIMEOUT, HttpCore, ResourceNamespace
from mam_mcp.client.http import json_body as _body
from mam_mcp.client.http import path_segment as _seg
from mam_mcp.client.linkedin_input import (
    SESSION_SCOPED_KINDS,
    SIGNAL_KINDS,
    WATCHLIST_MAX,
    check_actor_url,
    check_connection_note,
    check_conversation_urn,
    check_post_urn,
    check_profile_ref,
    check_profile_url,
    is_company_url,
)
from mam_mcp.client.linkedin_models import (
    CommentList,
    ConnectionResult,
    ContentPosts,
    ConversationList,
    DeliveryList,
    DirectMessageList,
    LinkedInSession,
    LoginResult,
    MatchList,
    ProfileLookup,
    ReactionList,
    SearchList,
    SearchRun,
    SentMessage,
    SessionList,
    Signal,
    SignalEnvelope,
    SignalList,
    SignalRun,
    Utilization,
    Watchlist,
    WebhookTest,
)

__all__ = [
    "Connections",
    "ContentSearch",
    "Conversations",
    "DirectMessages",
    "LinkedIn",
    "Posts",
    "Profiles",
    "Searches",
    "Sessions",
    "SignalWatchlist",
    "Signals",
    "signal_body",
]

T = TypeVar("T")


def _checked(field: str, check: Callable[[T], T], value: T) -> T:
    """Run a local check; a failure becomes VALIDATION_ERROR before any request is made."""
    try:
        return check(value)
    except ValueError as error:
        raise ValidationFailed(f"{field}: {error}", hint="Fix the argument; nothing was sent.") from None


def _in_range(field: str, value: int | None, low: int, high: int) -> int | None:
    if value is not None and not low <= value <= high:
        raise ValidationFailed(
            f"{field}: must be between {low} and {high}", hint="Fix the argument; nothing was sent."
        )
    return value


def _outcome_unknown(error: SendOutcomeUnknown, what: str, hint: str) -> SendOutcomeUnknown:
    return SendOutcomeUnknown(f"{what}: {error.message}", status=error.status, hint=hint)


class _LinkedInNamespace(ResourceNamespace):
    async def _spend(
        self, method: str, path: str, *, json: Any = None, timeout: float | None = None, what: str, hint: str
    ) -> Any:
        """A request that spends quota or acts on LinkedIn: a send, whose lost answer is reported."""
        try:
            return await self._http.request(method, path, json=json, timeout=timeout, send=True)
        except SendOutcomeUnknown as error:
            raise _outcome_unknown(error, what, hint) from None


# --- sessions ---------------------------------------------------------------------------------------------
class Sessions(_LinkedInNamespace):
    """Connected LinkedIn accounts. Logins carry passwords/cookies: only `mam-mcp linkedin connect` calls them."""

    async def list(self) -> list[LinkedInSession]:
        return SessionList.model_validate(await self._http.request("GET", "/linkedin/sessions")).sessions

    async def login(self, *, email: str, password: str, label: str | None = None) -> LoginResult:
        body = _body(email=email, password=password, label=label)
        return LoginResult.model_validate(await self._http.request("POST", "/linkedin/sessions", json=body))

    async def verify(self, *, challenge_id: str, pin: str, label: str | None = None) -> LoginResult:
        body = _body(challengeId=challenge_id, pin=pin, label=label)
        return LoginResult.model_validate(
            await self._http.request("POST", "/linkedin/sessions/verify", json=body)
        )

    async def poll(self, *, challenge_id: str, label: str | None = None) -> LoginResult:
        body = _body(challengeId=challenge_id, label=label)
        return LoginResult.model_validate(
            await self._http.request("POST", "/linkedin/sessions/poll", json=body)
        )

    async def import_cookies(self, *, li_at: str, jsession_id: str, label: str | None = None) -> LoginResult:
        body = _body(liAt=li_at, jsessionId=jsession_id, label=label)
        return LoginResult.model_validate(
            await self._http.request("POST", "/linkedin/sessions/import", json=body)
        )

    async def revoke(self, session_id: str) -> None:
        await self._http.request("DELETE", f"/linkedin/sessions/{_seg(session_id)}")

    async def utilization(self) -> Utilization:
        return Utilization.model_validate(await self._http.request("GET", "/linkedin/sessions/utilization"))


# --- profiles, connections, raw content search ------------------------------------------------------------
class Profiles(_LinkedInNamespace):
    async def lookup(self, profile_url: str, *, session_id: str | None = None) -> ProfileLookup:
        url = _checked("profile_url", check_profile_url, profile_url)
        body = _body(sessionId=session_id, profileUrl=url)
        data = await self._spend(
            "POST",
            "/linkedin/profiles/lookup",
            json=body,
            what="the lookup may have run",
            hint="A lookup changes nothing: retrying is safe but spends another of the 30/day profile lookups.",
        )
        return ProfileLookup.model_validate(data)


class Connections(_LinkedInNamespace):
    async def send(
        self, target: str, *, message: str | None = None, session_id: str | None = None
    ) -> ConnectionResult:
        target = _checked("target", check_profile_ref, target)
        if message is not None:
            message = _checked("note", check_connection_note, message)
        body = _body(sessionId=session_id, target=target, message=message)
        data = await self._spend(
            "POST",
            "/linkedin/connections",
            json=body,
            what="the connection request may have been sent",
            hint="Do not resend blindly: ask the user to check the invitation in LinkedIn first.",
        )
        return ConnectionResult.model_validate(data)


class ContentSearch(_LinkedInNamespace):
    async def content(
        self, keyword: str, *, session_id: str, date_posted: str | None = None, count: int | None = None
    ) -> ContentPosts:
        _in_range("count", count, 1, 25)
        body = _body(sessionId=session_id, keyword=keyword, datePosted=date_posted, count=count)
        data = await self._spend(
            "POST",
            "/linkedin/search/content",
            json=body,
            timeout=LONG_TIMEOUT,
            what="the search may have run",
            hint="A raw search changes nothing: retrying is safe but spends search quota again.",
        )
        return ContentPosts.model_validate(data)


class Searches(_LinkedInNamespace):
    """Historical searches with a firing rule: synchronous (10-15 s), persisted, free to re-open."""

    async def run(
        self,
        *,
        query: str,
        intent_description: str,
        lookback: str | None = None,
        min_intent: str | None = None,
        limit: int | None = None,
        session_id: str | None = None,
    ) -> SearchRun:
        _in_range("limit", limit, 1, 100)
        body = _body(
            query=query,
            intentDescription=intent_description,
            lookback=lookback,
            minIntent=min_intent,
            limit=limit,
            sessionId=session_id,
        )
        data = await self._spend(
            "POST",
            "/linkedin/searches",
            json=body,
            timeout=LONG_TIMEOUT,
            what="the search may have run",
            hint="Searches are persisted: call linkedin_list_searches and re-open it (free) before running it again.",
        )
        return SearchRun.model_validate(data)

    async def list(self, *, limit: int | None = None) -> SearchList:
        _in_range("limit", limit, 1, 100)
        return SearchList.model_validate(
            await self._http.request("GET", "/linkedin/searches", params={"limit": limit})
        )

    async def get(self, search_id: str) -> SearchRun:
        return SearchRun.model_validate(
            await self._http.request("GET", f"/linkedin/searches/{_seg(search_id)}")
        )


# --- signals ----------------------------------------------------------------------------------------------
def signal_body(
    *,
    kind: str,
    name: str,
    intent_description: str,
    query: str | None = None,
    target_url: str | None = None,
    profile_urls: Sequence[str] | None = None,
    cadence: str | None = None,
    webhook_url: str | None = None,
    filter_min_intent: str | None = None,
    session_id: str | None = None,
) -> dict[str, Any]:
    """The POST /signals body for `kind`, checking the fields that kind needs (ValidationFailed if not)."""
    if kind not in SIGNAL_KINDS:
        raise ValidationFailed(f"kind: must be one of {', '.join(SIGNAL_KINDS)}")
    problems: list[str] = []
    target: dict[str, str] | None = None
    watchlist: list[dict[str, str]] | None = None
    if not intent_description.strip():
        problems.append("intent_description: required (the firing rule)")
    if kind == "keyword" and not (query or "").strip():
        problems.append("query: required for kind=keyword (the LinkedIn keyword pre-filter)")
    if kind == "engagement":
        if not target_url:
            problems.append(
                "target_url: required for kind=engagement (a /in/ profile or /company/ URL to watch)"
            )
        else:
            url = _checked("target_url", check_actor_url, target_url)
            target = {"kind": "company" if is_company_url(url) else "profile", "url": url}
    if kind == "job_change_watchlist":
        urls = list(profile_urls or ())
        if not urls:
            problems.append("profile_urls: required for kind=job_change_watchlist (1-500 profile URLs)")
        elif len(urls) > WATCHLIST_MAX:
            problems.append(
                f"profile_urls: {len(urls)} given; at most {WATCHLIST_MAX} per signal (split the list)"
            )
        else:
            watchlist = [
                {"profileUrl": _checked(f"profile_urls.{i}", check_profile_url, u)}
                for i, u in enumerate(urls)
            ]
    if kind in SESSION_SCOPED_KINDS and not session_id:
        problems.append(
            f"session_id: required for kind={kind} (the inbox and network belong to one account; "
            "see linkedin_list_sessions)"
        )
    unused = {
        "query": query if kind not in ("keyword",) else None,
        "target_url": target_url if kind != "engagement" else None,
        "profile_urls": profile_urls if kind != "job_change_watchlist" else None,
    }
    problems += [f"{name_}: not used by kind={kind}" for name_, value in unused.items() if value]
    if problems:
        raise ValidationFailed("; ".join(problems), hint="Fix the named argument(s); nothing was sent.")
    return _body(
        kind=kind,
        name=name,
        query=query if kind == "keyword" else None,
        target=target,
        watchlist=watchlist,
        intentDescription=intent_description,
        cadence=cadence,
        webhookUrl=webhook_url,
        filterMinIntent=filter_min_intent,
        sessionId=session_id,
    )


class SignalWatchlist(_LinkedInNamespace):
    async def list(self, signal_id: str) -> Watchlist:
        return Watchlist.model_validate(
            await self._http.request("GET", f"/linkedin/signals/{_seg(signal_id)}/watchlist")
        )

    async def add(self, signal_id: str, entries: Sequence[tuple[str, str | None]]) -> Watchlist:
        """`entries` are (profile URL, optional label)."""
        if not 1 <= len(entries) <= WATCHLIST_MAX:
            raise ValidationFailed(
                f"profile_urls: give 1-{WATCHLIST_MAX} entries", hint="Fix the argument; nothing was sent."
            )
        body = {
            "entries": [
                _body(profileUrl=_checked(f"profile_urls.{i}", check_profile_url, url), label=label)
                for i, (url, label) in enumerate(entries)
            ]
        }
        return Watchlist.model_validate(
            await self._http.request("POST", f"/linkedin/signals/{_seg(signal_id)}/watchlist", json=body)
        )

    async def remove(self, signal_id: str, entry_id: str) -> None:
        await self._http.request("DELETE", f"/linkedin/signals/{_seg(signal_id)}/watchlist/{_seg(entry_id)}")


class Signals(_LinkedInNamespace):
    def __init__(self, http: HttpCore) -> None:
        super().__init__(http)
        self.watchlist = SignalWatchlist(http)

    async def create(self, **fields: Any) -> Signal:
        """Create a signal of any kind (`signal_body` arguments). Its `webhook_secret` is returned once."""
        body = signal_body(**fields)
        data = await self._spend(
            "POST",
            "/linkedin/signals",
            json=body,
            what="the signal may have been created",
            hint="Call linkedin_list_signals before creating it again (a duplicate would fire twice).",
        )
        return SignalEnvelope.model_validate(data).signal

    async def list(self) -> list[Signal]:
        return SignalList.model_validate(await self._http.request("GET", "/linkedin/signals")).signals

    async def get(self, signal_id: str) -> Signal:
        data = await self._http.request("GET", f"/linkedin/signals/{_seg(signal_id)}")
        return SignalEnvelope.model_validate(data).signal

    async def update(self, signal_id: str, **fields: Any) -> Signal:
        """Patch camelCase fields (name, query, intentDescription, cadence, webhookUrl, filterMinIntent, enabled)."""
        body = _body(**fields)
        if not body:
            raise ValidationFailed("nothing to update: pass at least one field", hint="Nothing was sent.")
        data = await self._http.request("PATCH", f"/linkedin/signals/{_seg(signal_id)}", json=body)
        return SignalEnvelope.model_validate(data).signal

    async def delete(self, signal_id: str) -> None:
        await self._http.request("DELETE", f"/linkedin/signals/{_seg(signal_id)}")

    async def run(self, signal_id: str) -> SignalRun:
        data = await self._spend(
            "POST",
            f"/linkedin/signals/{_seg(signal_id)}/run",
            timeout=LONG_TIMEOUT,
            what="the poll may have run",
            hint="Check linkedin_list_signal_matches before running it again.",
        )
        return SignalRun.model_validate(data)

    async def matches(
        self, signal_id: str, *, limit: int | None = None, since_id: str | None = None
    ) -> MatchList:
        _in_range("limit", limit, 1, 100)
        data = await self._http.request(
            "GET",
            f"/linkedin/signals/{_seg(signal_id)}/matches",
            params={"limit": limit, "sinceId": since_id},
        )
        return MatchList.model_validate(data)

    async def deliveries(self, signal_id: str) -> DeliveryList:
        return DeliveryList.model_validate(
            await self._http.request("GET", f"/linkedin/signals/{_seg(signal_id)}/deliveries")
        )

    async def test_webhook(self, signal_id: str) -> WebhookTest:
        return WebhookTest.model_validate(
            await self._http.request("POST", f"/linkedin/signals/{_seg(signal_id)}/test-webhook")
        )


# --- posts, messages, conversations -----------------------------------------------------------------------
class Posts(_LinkedInNamespace):
    """Read-only post graph; each call burns one engagement_poll slot of the session's daily budget."""

    async def by_author(self, author_url: str, *, session_id: str, count: int | None = None) -> ContentPosts:
        url = _checked("author_url", check_actor_url, author_url)
        _in_range("count", count, 1, 100)
        data = await self._http.request(
            "GET",
            "/linkedin/posts/by-author",
            params={"sessionId": session_id, "profileUrl": url, "count": count},
            retry=False,  # each call spends quota: a retry would spend it again
        )
        return ContentPosts.model_validate(data)

    async def comments(self, post_urn: str, *, session_id: str, count: int | None = None) -> CommentList:
        urn = _checked("post_urn", check_post_urn, post_urn)
        _in_range("count", count, 1, 100)
        data = await self._http.request(
            "GET", f"/linkedin/posts/{_seg(urn)}/comments", params={"sessionId": session_id, "count": count},
            retry=False,
        )
        return CommentList.model_validate(data)

    async def reactions(self, post_urn: str, *, session_id: str, count: int | None = None) -> ReactionList:
        urn = _checked("post_urn", check_post_urn, post_urn)
        _in_range("count", count, 1, 100)
        data = await self._http.request(
            "GET", f"/linkedin/posts/{_seg(urn)}/reactions", params={"sessionId": session_id, "count": count},
            retry=False,
        )
        return ReactionList.model_validate(data)


class DirectMessages(_LinkedInNamespace):
    async def send(
        self, *, session_id: str, text: str, recipient: str | None = None, conversation_urn: str | None = None
    ) -> SentMessage:
        if (recipient is None) == (conversation_urn is None):
            raise ValidationFailed(
                "pass exactly one of recipient or conversation_urn", hint="Nothing was sent."
            )
        if recipient is not None:
            recipient = _checked("recipient", check_profile_ref, recipient)
        if conversation_urn is not None:
            conversation_urn = _checked("conversation_urn", check_conversation_urn, conversation_urn)
        if not text.strip():
            raise ValidationFailed("text: empty message", hint="Nothing was sent.")
        body = _body(sessionId=session_id, text=text, recipient=recipient, conversationUrn=conversation_urn)
        data = await self._spend(
            "POST",
            "/linkedin/messages",
            json=body,
            what="the message may have been delivered",
            hint="Read the thread with linkedin_get_conversation before sending it again.",
        )
        return SentMessage.model_validate(data)


class Conversations(_LinkedInNamespace):
    async def list(self, *, session_id: str) -> ConversationList:
        data = await self._http.request("GET", "/linkedin/conversations", params={"sessionId": session_id})
        return ConversationList.model_validate(data)

    async def messages(self, conversation_urn: str, *, session_id: str) -> DirectMessageList:
        urn = _checked("conversation_urn", check_conversation_urn, conversation_urn)
        data = await self._http.request(
            "GET", f"/linkedin/conversations/{_seg(urn)}/messages", params={"sessionId": session_id}
        )
        return DirectMessageList.model_validate(data)


class LinkedIn:
    """`client.linkedin`: the hosted API's LinkedIn namespaces."""

    def __init__(self, http: HttpCore) -> None:
        self.sessions = Sessions(http)
        self.profiles = Profiles(http)
        self.connections = Connections(http)
        self.search = ContentSearch(http)
        self.searches = Searches(http)
        self.signals = Signals(http)
        self.posts = Posts(http)
        self.messages = DirectMessages(http)
        self.conversations = Conversations(http)
