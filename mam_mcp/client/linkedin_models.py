"""Pydantic models of the hosted LinkedIn responses (reference: references/linkedin.md + cheatsheet).

Shapes follow the reference and a real client of the hosted API (DESIGN §3). Unknown fields are
kept (extra="allow"); secrets the API returns (a signal's `webhookSecret`) are `SecretStr`, so
a dump or repr of a model never carries them.
"""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices, Field, SecretStr

from mam_mcp.client.models import ApiModel

__all__ = [
    "Classification",
    "CommentList",
    "ConnectionResult",
    "ContentPost",
    "ContentPosts",
    "Conversation",
    "ConversationList",
    "Delivery",
    "DeliveryList",
    "DirectMessage",
    "DirectMessageList",
    "LinkedInSession",
    "LoginResult",
    "MatchList",
    "Participant",
    "PostComment",
    "PostReaction",
    "Profile",
    "ProfileLookup",
    "ReactionList",
    "Search",
    "SearchAuthor",
    "SearchDiagnostics",
    "SearchList",
    "SearchResult",
    "SearchRun",
    "SentMessage",
    "SessionList",
    "SessionUsage",
    "Signal",
    "SignalEnvelope",
    "SignalList",
    "SignalMatch",
    "SignalRun",
    "SignalTarget",
    "Utilization",
    "Watchlist",
    "WatchlistEntry",
    "WebhookTest",
]



# --- sessions ---------------------------------------------------------------------------------------
class LinkedInSession(ApiModel):
    id: str
    label: str | None = None
    status: str | None = None
    created_at: str | None = None
    last_used_at: str | None = None


class SessionList(ApiModel):
    sessions: list[LinkedInSession] = Field(default_factory=list)


class LoginResult(ApiModel):
    """POST /sessions, /sessions/verify, /sessions/poll, /sessions/import."""

    ok: bool = False
    session_id: str | None = None
    label: str | None = None
    created_at: str | None = None
    challenge: bool | None = None
    challenge_id: str | None = None
    challenge_type: str | None = None  # "pin" | "mobile"
    expires_at: str | None = None
    pending: bool | None = None
    error: str | None = None


class SessionUsage(ApiModel):
    session_id: str
    label: str | None = None
    status: str | None = None
    rate_limited_until: str | None = None
    rate_limit_reason: str | None = None
    counts: dict[str, int] = Field(default_factory=dict)
    remaining: dict[str, int] = Field(default_factory=dict)


class Utilization(ApiModel):
    ok: bool | None = None
    budget: dict[str, int] = Field(default_factory=dict)
    sessions: list[SessionUsage] = Field(default_factory=list)


# --- profiles and connections ------------------------------------------------------------------------
class Profile(ApiModel):
    name: str | None = None
    profile_id: str | None = None
    public_identifier: str | None = None
    headline: str | None = None
    profile_url: str | None = None
    role: str | None = None
    company: str | None = None
    location: str | None = None


class ProfileLookup(ApiModel):
    ok: bool | None = None
    profile: Profile


class ConnectionResult(ApiModel):
    ok: bool | None = None
    status: str | None = None
    invitation_id: str | None = None
    error: str | None = None


# --- raw content search --------------------------------------------------------------------------------
class ContentPost(ApiModel):
    post_url: str | None = Field(default=None, validation_alias=AliasChoices("postUrl", "url", "post_url"))
    urn: str | None = None
    excerpt: str | None = Field(default=None, validation_alias=AliasChoices("excerpt", "text", "postExcerpt"))
    author_name: str | None = None
    author_profile_url: str | None = None
    author_headline: str | None = None
    posted_at: str | None = None
    reaction_count: int | None = None
    comment_count: int | None = None


class ContentPosts(ApiModel):
    posts: list[ContentPost] = Field(default_factory=list)


# --- historical searches ------------------------------------------------------------------------------
class SearchAuthor(ApiModel):
    name: str | None = None
    profile_url: str | None = None
    headline: str | None = None
    role: str | None = None
    company: str | None = None


class Classification(ApiModel):
    engage: bool | None = None
    intent: str | None = None
    reason: str | None = None


class SearchResult(ApiModel):
    post_url: str | None = None
    post_excerpt: str | None = None
    posted_at: str | None = None
    author: SearchAuthor = Field(default_factory=SearchAuthor)
    classification: Classification | None = None
    triage_score: int | None = None
    rank: int | None = None


class Search(ApiModel):
    id: str
    session_id: str | None = None
    query: str | None = None
    lookback: str | None = None
    min_intent: str | None = None
    intent_description: str | None = None
    result_count: int | None = None
    took_ms: int | None = None
    error_code: str | None = None
    error_message: str | None = None
    created_at: str | None = None


class SearchDiagnostics(ApiModel):
    candidates_examined: int | None = None
    candidates_with_empty_body: int | None = None
    rejected_by_text_triage: int | None = None
    rejected_by_profile_lookup: int | None = None
    rejected_by_min_intent: int | None = None
    scraper_health_hint: str | None = None


class SearchRun(ApiModel):
    """POST /searches and GET /searches/:id."""

    search: Search
    results: list[SearchResult] = Field(default_factory=list)
    diagnostics: SearchDiagnostics | None = None


class SearchList(ApiModel):
    searches: list[Search] = Field(default_factory=list)


# --- signals ------------------------------------------------------------------------------------------
class SignalTarget(ApiModel):
    kind: str
    url: str
    label: str | None = None


class Signal(ApiModel):
    id: str
    kind: str | None = None
    name: str | None = None
    query: str | None = None
    intent_description: str | None = None
    session_id: str | None = None
    cadence: str | None = None
    webhook_url: str | None = None
    # Returned once on create; SecretStr so no dump, repr or log shows it.
    webhook_secret: SecretStr | None = Field(default=None, repr=False)
    filter_min_intent: str | None = None
    target: SignalTarget | None = None
    watchlist_count: int | None = None
    enabled: bool | None = None
    last_polled_at: str | None = None
    next_poll_at: str | None = None
    last_error: str | None = None
    matches_count: int | None = None
    created_at: str | None = None


class SignalEnvelope(ApiModel):
    signal: Signal


class SignalList(ApiModel):
    signals: list[Signal] = Field(default_factory=list)


class SignalMatch(ApiModel):
    id: str
    post_url: str | None = None
    post_excerpt: str | None = None
    post_posted_at: str | None = None
    author: SearchAuthor | None = None
    classification: Classification | None = None
    found_at: str | None = None
    pending_enrichment: bool | None = None
    match_kind: str | None = None


class MatchList(ApiModel):
    matches: list[SignalMatch] = Field(default_factory=list)


class Delivery(ApiModel):
    id: str
    match_id: str | None = None
    status: str | None = None
    attempts: int | None = None
    response_status: int | None = None
    error: str | None = None
    created_at: str | None = None
    delivered_at: str | None = None


class DeliveryList(ApiModel):
    deliveries: list[Delivery] = Field(default_factory=list)


class WatchlistEntry(ApiModel):
    id: str | None = None
    profile_url: str
    label: str | None = None
    last_polled_at: str | None = None


class Watchlist(ApiModel):
    entries: list[WatchlistEntry] = Field(default_factory=list)


class SignalRun(ApiModel):
    """POST /signals/:id/run: the poll's outcome (shape not pinned by the reference; kept whole)."""

    result: dict[str, Any] | None = None


class WebhookTest(ApiModel):
    ok: bool | None = None
    status: int | None = Field(default=None, validation_alias=AliasChoices("status", "responseStatus"))
    error: str | None = None


# --- posts ----------------------------------------------------------------------------------------------
class PostComment(ApiModel):
    author: SearchAuthor = Field(default_factory=SearchAuthor)
    text: str | None = Field(default=None, validation_alias=AliasChoices("text", "commentText"))
    created_at: str | None = None


class PostReaction(ApiModel):
    actor: SearchAuthor = Field(
        default_factory=SearchAuthor, validation_alias=AliasChoices("actor", "author")
    )
    reaction_type: str | None = None


class CommentList(ApiModel):
    comments: list[PostComment] = Field(default_factory=list)


class ReactionList(ApiModel):
    reactions: list[PostReaction] = Field(default_factory=list)


# --- conversations and DMs ------------------------------------------------------------------------------
class Participant(ApiModel):
    name: str | None = None
    profile_url: str | None = None
    headline: str | None = None


class Conversation(ApiModel):
    conversation_urn: str
    participants: list[Participant] = Field(default_factory=list)
    unread_count: int | None = None
    last_message_preview: str | None = None
    last_message: Any = None  # seen as a string or as {text, sentAt}
    last_activity_at: str | None = None

    @property
    def preview(self) -> str | None:
        if self.last_message_preview:
            return self.last_message_preview
        if isinstance(self.last_message, dict):
            text = self.last_message.get("text")
            return str(text) if text is not None else None
        return str(self.last_message) if self.last_message is not None else None


class ConversationList(ApiModel):
    conversations: list[Conversation] = Field(default_factory=list)


class DirectMessage(ApiModel):
    message_urn: str | None = None
    text: str | None = None
    sender: Participant | None = None
    is_from_viewer: bool | None = None
    sent_at: str | None = None
    attachment_count: int | None = None
    reaction_count: int | None = None


class DirectMessageList(ApiModel):
    messages: list[DirectMessage] = Field(default_factory=list)


class SentMessage(ApiModel):
    ok: bool | None = None
    message_urn: str | None = None
    conversation_urn: str | None = None
    backend_conversation_urn: str | None = None
    delivered_at: str | None = None
