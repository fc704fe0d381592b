"""Errors of the /v1 API as exceptions: one class per family, each with code, status and a hint.

The hint is one line telling an agent what to do next; tools put it after the message:
`CODE: message. Hint: ...`.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "MamError",
    "ValidationFailed",
    "AuthError",
    "AuthMissing",
    "AuthInvalid",
    "AuthForbidden",
    "AuthLockout",
    "PlanLimitReached",
    "InboxPaused",
    "DomainNotVerified",
    "DomainWrongWorkspace",
    "NotFound",
    "Conflict",
    "RateLimited",
    "LinkedInRateLimited",
    "NoSessionAvailable",
    "SessionNotFound",
    "TooManySessions",
    "ProfileNotFound",
    "WebhookLimitReached",
    "UpstreamError",
    "SmtpError",
    "ProviderError",
    "ServerError",
    "ConnectionFailed",
    "SendOutcomeUnknown",
    "WriteOutcomeUnknown",
    "IdempotencyKeyReused",
    "IdempotencyInterrupted",
    "PolicyDenied",
    "ContentChanged",
    "RelayRejected",
    "error_from_response",
    "ERROR_CLASSES",
]


class MamError(Exception):
    """An error of the MyAgentMail API (or of reaching it)."""

    code: ClassVar[str] = "API_ERROR"
    default_hint: ClassVar[str] = "Check the arguments and try again."

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        hint: str | None = None,
        details: Any = None,
        retry_after: float | None = None,
        bucket: str | None = None,
        quoted: list[str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        # Strings from mail (addresses a reply derived from the message, a subject...) that this error
        # is about: kept out of the message, shown fenced as untrusted where the error reaches an agent.
        self.quoted = quoted or []
        self.status = status
        if code is not None:
            self.code = code  # type: ignore[misc]  # an unknown server code keeps its own name
        self.hint = hint or self.default_hint
        self.details = details
        self.retry_after = retry_after
        self.bucket = bucket

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def to_text(self) -> str:
        """`CODE: message. Hint: ...` — the form agents read."""
        text = self.message.rstrip()
        if not text.endswith((".", "!", "?")):
            text += "."
        extra = []
        if self.retry_after is not None:
            extra.append(f"retry after {self.retry_after:g}s")
        if self.bucket:
            extra.append(f"rate-limit bucket '{self.bucket}'")
        if extra:
            text += " (" + ", ".join(extra) + ")"
        return f"{self.code}: {text} Hint: {self.hint}"

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"code": self.code, "message": self.message, "hint": self.hint}
        if self.status is not None:
            data["status"] = self.status
        if self.details:
            data["details"] = self.details
        if self.retry_after is not None:
            data["retry_after"] = self.retry_after
        if self.bucket:
            data["bucket"] = self.bucket
        if self.quoted:
            data["quoted"] = self.quoted
            data["untrusted"] = True
        return data


class ValidationFailed(MamError):
    code = "VALIDATION_ERROR"
    default_hint = "Fix the named field(s) and call again."


class AuthError(MamError):
    code = "AUTH_INVALID"
    default_hint = "Fix the API key: run `mam-mcp login`, or set MYAGENTMAIL_API_KEY in the host config."


class AuthMissing(AuthError):
    code = "AUTH_MISSING"
    default_hint = "No API key was sent. Run `mam-mcp login` or set MYAGENTMAIL_API_KEY; without one mam-mcp uses the local backend."


class AuthInvalid(AuthError):
    code = "AUTH_INVALID"


class AuthForbidden(MamError):
    code = "AUTH_FORBIDDEN"
    default_hint = "This key's scope does not cover that resource; use a key of the right scope (tk_ tenant, wk_ workspace, ak_ inbox)."


class AuthLockout(MamError):
    code = "AUTH_LOCKOUT"
    default_hint = "Too many failed logins with this key: stop retrying (it extends the lockout), fix MYAGENTMAIL_API_KEY and wait 15 minutes."


class PlanLimitReached(MamError):
    code = "PLAN_LIMIT_REACHED"
    default_hint = "The account hit a plan limit (inboxes, emails or domains); delete unused resources or upgrade, or wait for the next billing period."


class InboxPaused(MamError):
    code = "INBOX_PAUSED"
    default_hint = "Too many bounces: sending from this inbox is blocked. Stop sending to unverified addresses and contact support to unpause."


class DomainNotVerified(MamError):
    code = "DOMAIN_NOT_VERIFIED"
    default_hint = "Add the domain's DNS records, then call verify_domain until its status is verified."


class DomainWrongWorkspace(MamError):
    code = "DOMAIN_WRONG_WORKSPACE"
    default_hint = "That domain belongs to another workspace; use an address on a domain of this inbox's workspace."


class NotFound(MamError):
    code = "NOT_FOUND"
    default_hint = "Check the id (list_inboxes / list_messages give valid ids); it may also be outside this key's scope."


class Conflict(MamError):
    code = "CONFLICT"
    default_hint = "It already exists (e.g. the address is used by another inbox); pick another name or use the existing one."


class RateLimited(MamError):
    code = "RATE_LIMITED"
    default_hint = (
        "Rate limited: wait for the Retry-After time before calling again; do not loop. The 'llm' bucket "
        "(LinkedIn searches and signal runs) allows 60 a minute."
    )


class LinkedInRateLimited(MamError):
    code = "LINKEDIN_RATE_LIMITED"
    default_hint = "LinkedIn paused that session for 24 h. Omit session_id so other sessions absorb the load, or ask the user to connect another LinkedIn account. Do not retry it."


class NoSessionAvailable(MamError):
    code = "NO_SESSION_AVAILABLE"
    default_hint = "Every connected LinkedIn session is rate-limited or out of daily budget: ask the user to connect another account (`mam-mcp linkedin connect`) or wait."


class SessionNotFound(MamError):
    code = "SESSION_NOT_FOUND"
    default_hint = "That LinkedIn session id is invalid or revoked: omit session_id to auto-distribute (linkedin_list_sessions lists the live ones)."


class TooManySessions(MamError):
    code = "TOO_MANY_SESSIONS"
    default_hint = "The LinkedIn session cap (default 10) is reached: revoke an unused session (linkedin_revoke_session) before connecting a new one."


class ProfileNotFound(MamError):
    code = "PROFILE_NOT_FOUND"
    default_hint = "No profile matches that URL or slug exactly; check the spelling of the /in/<slug> part."


class WebhookLimitReached(MamError):
    code = "WEBHOOK_LIMIT_REACHED"
    default_hint = "The webhook limit is reached: delete a stale webhook first."


class UpstreamError(MamError):
    code = "PROVIDER_ERROR"
    default_hint = "An upstream mail provider failed; try again in a minute."


class SmtpError(UpstreamError):
    code = "SMTP_ERROR"
    default_hint = "The SMTP relay failed; try again in a minute."


class ProviderError(UpstreamError):
    code = "PROVIDER_ERROR"


class ServerError(MamError):
    code = "SERVER_ERROR"
    default_hint = "The API failed; try again shortly."


class ConnectionFailed(MamError):
    code = "CONNECTION_FAILED"
    default_hint = "The API could not be reached; check the network, MYAGENTMAIL_BASE_URL, or run `mam-mcp doctor`."


class SendOutcomeUnknown(MamError):
    """A send whose result is unknown: it may have been sent. Never retried blindly."""

    code = "SEND_OUTCOME_UNKNOWN"
    default_hint = (
        "The email may have been sent. Call list_messages with direction='outbound' and check for it "
        "before sending again; do not resend blindly."
    )


class WriteOutcomeUnknown(MamError):
    """A write (create, update, delete) whose answer never came: it may have been carried out.

    Never retried without an Idempotency-Key the backend honours; the hint names what to check.
    """

    code = "WRITE_OUTCOME_UNKNOWN"
    default_hint = "It may have been done: check (list or get it) before repeating the call; do not repeat it blindly."


class IdempotencyKeyReused(MamError):
    """The backend has a different request recorded under this Idempotency-Key (a client bug)."""

    code = "IDEMPOTENCY_KEY_REUSED"
    default_hint = "Nothing was created by this call. Call the tool again: it gets a new key."


class IdempotencyInterrupted(MamError):
    """The first request with this Idempotency-Key was cut off (the backend stopped) before it answered."""

    code = "IDEMPOTENCY_INTERRUPTED"
    default_hint = "It may have been created: list the resource to check before creating it again."


class PolicyDenied(MamError):
    """The outbound policy of this server refuses the send (set by the person running mam-mcp)."""

    code = "POLICY_DENIED"
    default_hint = (
        "Only the person running mam-mcp can change the outbound policy (its config file, environment or "
        "flags); no tool can. Tell the user what was refused; do not try another route to send it."
    )


class ContentChanged(MamError):
    """The message to send is no longer the one a person approved."""

    code = "CONTENT_CHANGED"
    default_hint = (
        "Nothing was sent. Call the send again: the person will be shown the current version to approve."
    )


class RelayRejected(MamError):
    """The outbound relay refused the message for good (5xx): it was not sent. A definite outcome."""

    code = "RELAY_REJECTED"
    default_hint = (
        "Nothing was sent; do not resend it unchanged. The message names the relay's answer: 535 or another "
        "authentication error means the relay login in MAM_SMTP_RELAY_URL is wrong (a person must fix it); "
        "550/5.1.1 means the address does not exist (check it); a policy refusal (554, 5.7.x) means the relay "
        "will not carry this mail."
    )


ERROR_CLASSES: dict[str, type[MamError]] = {
    cls.code: cls
    for cls in (
        ValidationFailed,
        AuthMissing,
        AuthInvalid,
        AuthForbidden,
        AuthLockout,
        PlanLimitReached,
        InboxPaused,
        DomainNotVerified,
        DomainWrongWorkspace,
        NotFound,
        Conflict,
        RateLimited,
        LinkedInRateLimited,
        NoSessionAvailable,
        SessionNotFound,
        TooManySessions,
        ProfileNotFound,
        WebhookLimitReached,
        SmtpError,
        ProviderError,
        PolicyDenied,
        ContentChanged,
        RelayRejected,
        WriteOutcomeUnknown,
        IdempotencyKeyReused,
        IdempotencyInterrupted,
    )
}

_BY_STATUS: dict[int, type[MamError]] = {
    400: ValidationFailed,
    401: AuthInvalid,
    403: AuthForbidden,
    404: NotFound,
    409: Conflict,
    429: RateLimited,
    502: ProviderError,
}


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date; rare here, treated as unknown


def error_from_response(status: int, body: Any, headers: Any) -> MamError:
    """Map an HTTP error response to the right MamError subclass."""
    message = ""
    code: str | None = None
    details = None
    if isinstance(body, dict):
        raw_message = body.get("error") or body.get("message")
        if isinstance(raw_message, dict):  # some APIs nest {error: {message, code}}
            code = raw_message.get("code")
            raw_message = raw_message.get("message")
        message = str(raw_message or "")
        code = code or body.get("code")
        details = body.get("details")
    cls = ERROR_CLASSES.get(code or "") or _BY_STATUS.get(status)
    if cls is None:
        cls = ServerError if status >= 500 else MamError
    if not message:
        message = f"HTTP {status}"
    retry_after = _parse_retry_after(headers.get("retry-after")) if headers is not None else None
    bucket = headers.get("x-ratelimit-bucket") if headers is not None else None
    unknown_code = code if code and code not in ERROR_CLASSES else None
    return cls(
        message, status=status, code=unknown_code, details=details, retry_after=retry_after, bucket=bucket
    )
