"""Pydantic models of the /v1 contract (camelCase on the wire, snake_case in Python).

These models are the contract between our client, the strict fake of the hosted API
(tests/fakes) and the embedded local backend (mam_mcp.local): all three agree on them.
Models accept unknown fields (the hosted API adds fields over time) and the known
variations of older rows (e.g. `toAddresses` as a string).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

__all__ = [
    "ApiModel",
    "Attachment",
    "AttachmentList",
    "Domain",
    "DnsRecord",
    "Draft",
    "DraftList",
    "Inbox",
    "InboxAddress",
    "InboxKey",
    "InboxList",
    "Message",
    "MessageList",
    "Metrics",
    "SendPreview",
    "PreviewAttachment",
    "SendResult",
    "Thread",
    "ThreadList",
    "ListEntry",
    "AddressList",
    "Webhook",
    "Workspace",
    "WorkspaceKey",
    "VerifyEmailResult",
]


class ApiModel(BaseModel):
    """Base: camelCase aliases, populate by either name, keep unknown fields."""

    # defer_build: a model's validator is built on its first use, not at import (start-up time).
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow", defer_build=True)

    def wire(self) -> dict[str, Any]:
        """The camelCase JSON form, as sent over the wire."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return [str(v) for v in value]


_MAIL_CREDENTIAL_KEYS = frozenset({"imap", "smtp", "imapPassword", "smtpPassword", "imap_password", "smtp_password"})


class InboxAddress(ApiModel):
    email: str
    primary: bool = False
    created_at: str | None = None


class Inbox(ApiModel):
    id: str
    email: str
    username: str | None = None
    domain: str | None = None
    display_name: str | None = None
    workspace_id: str | None = None
    created_at: str | None = None
    expires_at: str | None = None  # local backend only: when an ephemeral inbox is deleted
    addresses: list[InboxAddress] | None = None
    # Returned once by POST /inboxes?reveal=true; "" when redacted. Never shown to agents.
    api_key: str | None = Field(default=None, repr=False)
    credentials_revealed: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _drop_mail_credentials(cls, data: Any) -> Any:
        # GET /inboxes/:id carries IMAP/SMTP passwords; kept as extras they would show in repr and dumps (DESIGN §3).
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if k not in _MAIL_CREDENTIAL_KEYS}
        return data


class InboxList(ApiModel):
    inboxes: list[Inbox] = Field(default_factory=list)


class InboxKey(ApiModel):
    id: str | None = None
    key: str | None = Field(default=None, repr=False)
    api_key: str | None = Field(default=None, repr=False)
    name: str | None = None
    prefix: str | None = None
    created_at: str | None = None


class Attachment(ApiModel):
    id: str
    filename: str | None = None
    content_type: str | None = None
    size: int | None = None


class AttachmentList(ApiModel):
    attachments: list[Attachment] = Field(default_factory=list)


class Message(ApiModel):
    id: str
    inbox_id: str | None = None
    thread_id: str | None = None
    direction: Literal["inbound", "outbound"] = "inbound"
    from_address: str | None = None
    from_name: str | None = None
    to_addresses: list[str] = Field(default_factory=list)
    cc_addresses: list[str] = Field(default_factory=list)
    subject: str | None = None
    plain_body: str | None = None
    html_body: str | None = None
    is_read: bool = False
    status: str | None = None
    message_id: str | None = None  # RFC 5322 Message-ID header
    in_reply_to: str | None = None
    received_at: str | None = None
    sent_at: str | None = None
    created_at: str | None = None
    attachments: list[Attachment] | None = None
    has_attachments: bool | None = None
    tag: str | None = None  # local backend: the plus-address tag it was delivered with

    @field_validator("to_addresses", "cc_addresses", mode="before")
    @classmethod
    def _split_addresses(cls, value: Any) -> list[str]:
        return _as_list(value)

    @property
    def date(self) -> str | None:
        return self.received_at or self.sent_at or self.created_at


class MessageList(ApiModel):
    messages: list[Message] = Field(default_factory=list)
    total: int | None = None


class SendResult(ApiModel):
    id: str
    thread_id: str | None = None
    status: str | None = None
    message_id: str | None = None
    draft_id: str | None = None
    relay_reply: str | None = None  # local backend: the relay's last answer (queued, failed, unknown, partial)
    next_attempt_at: str | None = None  # local backend, queued: when it is tried again
    retry_until: str | None = None  # local backend, queued: after this it is failed, never sent late


class PreviewAttachment(ApiModel):
    filename: str
    size: int | None = None


class SendPreview(ApiModel):
    """What a send would put on the wire (local backend dry run, or composed by the tools from reads)."""

    from_address: str = Field(alias="from")
    from_name: str | None = None
    to: list[str] = Field(default_factory=list)
    cc: list[str] = Field(default_factory=list)
    bcc: list[str] = Field(default_factory=list)
    subject: str = ""
    plain_body: str | None = None
    html_body: str | None = None
    attachments: list[PreviewAttachment] = Field(default_factory=list)
    new_recipients: list[str] = Field(default_factory=list)
    answering: list[str] = Field(default_factory=list)  # a reply's addressees: known without consent
    in_reply_to: str | None = None
    content_hash: str = ""


class Thread(ApiModel):
    id: str
    inbox_id: str | None = None
    subject: str | None = None
    message_count: int | None = None
    last_message_at: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    messages: list[Message] | None = None


class ThreadList(ApiModel):
    threads: list[Thread] = Field(default_factory=list)


class Draft(ApiModel):
    id: str
    inbox_id: str | None = None
    to: list[str] = Field(default_factory=list)
    cc: list[str] = Field(default_factory=list)
    bcc: list[str] = Field(default_factory=list)
    subject: str | None = None
    plain_body: str | None = None
    html_body: str | None = None
    reply_to_message_id: str | None = None
    created_at: str | None = None
    updated_at: str | None = None

    @field_validator("to", "cc", "bcc", mode="before")
    @classmethod
    def _split_addresses(cls, value: Any) -> list[str]:
        return _as_list(value)


class DraftList(ApiModel):
    drafts: list[Draft] = Field(default_factory=list)


class ListEntry(ApiModel):
    id: str
    email: str
    display_name: str | None = None
    metadata: dict[str, Any] | None = None
    created_at: str | None = None


class AddressList(ApiModel):
    id: str
    inbox_id: str | None = None
    name: str
    description: str | None = None
    created_at: str | None = None
    entries: list[ListEntry] | None = None


class DnsRecord(ApiModel):
    type: str
    host: str
    value: str
    priority: int | None = None


class Domain(ApiModel):
    domain: str
    status: str | None = None
    inbound_enabled: bool | None = None
    outbound_enabled: bool | None = None
    created_at: str | None = None
    verified_at: str | None = None
    # The hosted SDK calls them dnsRecords; a real client saw `records`. Accept both.
    records: list[DnsRecord] = Field(
        default_factory=list, validation_alias=AliasChoices("records", "dnsRecords", "dns_records")
    )


class Workspace(ApiModel):
    id: str
    name: str
    created_at: str | None = None


class WorkspaceKey(ApiModel):
    id: str
    name: str | None = None
    key: str | None = Field(default=None, repr=False)  # wk_..., returned once on create
    prefix: str | None = None
    created_at: str | None = None
    revoked_at: str | None = None


class Webhook(ApiModel):
    id: str
    url: str
    events: list[str] = Field(default_factory=list)
    is_active: bool = True
    secret: str | None = Field(default=None, repr=False)  # returned once on create
    created_at: str | None = None


class Metrics(ApiModel):
    counts: dict[str, int] = Field(default_factory=dict)
    resources: dict[str, int] = Field(default_factory=dict)
    scope: dict[str, Any] = Field(default_factory=dict)
    window: dict[str, Any] = Field(default_factory=dict)


class VerifyEmailResult(ApiModel):
    email: str
    valid: bool
    reason: str | None = None
    mx: list[str] | None = None
