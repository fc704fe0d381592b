"""Request bodies of the hosted /v1 email endpoints, as docs/contract.md documents them.

Strict on purpose: unknown fields (e.g. `text`/`html` instead of `plainBody`/`htmlBody`),
snake_case names and wrong JSON types are rejected, so our client cannot drift.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

__all__ = [
    "AddAddressBody",
    "CreateDomainBody",
    "CreateDraftBody",
    "CreateInboxBody",
    "CreateKeyBody",
    "CreateListBody",
    "CreateListEntryBody",
    "CreateWebhookBody",
    "CreateWorkspaceBody",
    "ForwardBody",
    "MarkMessageBody",
    "ReplyBody",
    "SendBody",
    "SendDraftBody",
    "StrictBody",
    "UpdateDraftBody",
    "UpdateInboxBody",
    "UpdateWebhookBody",
    "VerifyEmailBody",
]

Recipients = str | list[str]


class StrictBody(BaseModel):
    """camelCase only, no unknown fields, no type coercion."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=False, extra="forbid", strict=True)


class CreateInboxBody(StrictBody):
    username: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")
    display_name: str | None = None
    domain: str | None = None
    workspace_id: str | None = None


class UpdateInboxBody(StrictBody):
    display_name: str | None = None
    metadata: dict[str, Any] | None = None


class AddAddressBody(StrictBody):
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    primary: bool = False


class CreateKeyBody(StrictBody):
    name: str | None = None


def _has_a_body(plain_body: str | None, html_body: str | None) -> None:
    if plain_body is None and html_body is None:
        raise ValueError("one of plainBody or htmlBody is required")


class SendBody(StrictBody):
    to: Recipients
    cc: Recipients | None = None
    bcc: Recipients | None = None
    subject: str
    plain_body: str | None = None
    html_body: str | None = None
    verified: bool | None = None

    @model_validator(mode="after")
    def _body_present(self) -> SendBody:
        _has_a_body(self.plain_body, self.html_body)
        return self


class ReplyBody(StrictBody):
    plain_body: str | None = None
    html_body: str | None = None
    cc: Recipients | None = None
    bcc: Recipients | None = None
    verified: bool | None = None  # the reference's send rule covers every route that sends

    @model_validator(mode="after")
    def _body_present(self) -> ReplyBody:
        _has_a_body(self.plain_body, self.html_body)
        return self


class ForwardBody(StrictBody):
    to: Recipients
    cc: Recipients | None = None
    bcc: Recipients | None = None
    plain_body: str | None = None
    html_body: str | None = None
    verified: bool | None = None


class MarkMessageBody(StrictBody):
    is_read: bool


class CreateDraftBody(StrictBody):
    to: Recipients | None = None
    cc: Recipients | None = None
    bcc: Recipients | None = None
    subject: str | None = None
    plain_body: str | None = None
    html_body: str | None = None
    reply_to_message_id: str | None = None


class UpdateDraftBody(CreateDraftBody):
    """Merge-patch: only the fields present change; `null` clears a field."""


class SendDraftBody(StrictBody):
    verified: bool | None = None


class CreateListBody(StrictBody):
    name: str = Field(min_length=1)
    description: str | None = None


class CreateListEntryBody(StrictBody):
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    display_name: str | None = None
    metadata: dict[str, Any] | None = None


class CreateDomainBody(StrictBody):
    domain: str = Field(max_length=253, pattern=r"^([a-z0-9-]+\.)+[a-z]{2,}$")


class CreateWorkspaceBody(StrictBody):
    name: str = Field(min_length=1)


class CreateWebhookBody(StrictBody):
    url: str = Field(pattern=r"^https?://")
    events: list[str] = Field(min_length=1)
    inbox_id: str | None = None
    workspace_id: str | None = None


class UpdateWebhookBody(StrictBody):
    url: str | None = Field(default=None, pattern=r"^https?://")
    events: list[str] | None = None
    is_active: bool | None = None


class VerifyEmailBody(StrictBody):
    email: str | None = None
    emails: list[str] | None = Field(default=None, min_length=1, max_length=50)

    @model_validator(mode="after")
    def _exactly_one(self) -> VerifyEmailBody:
        if (self.email is None) == (self.emails is None):
            raise ValueError("pass exactly one of email or emails")
        return self
