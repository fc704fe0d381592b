"""The inbox_admin toolset: inbox settings, addresses, keys, deletion, raw source, address checks."""

from typing import TYPE_CHECKING, Annotated, Any

from mcp_types import CallToolResult
from pydantic import Field

from mam_mcp.toolkit.arguments import EmailAddress, InboxId, MessageId
from mam_mcp.toolkit.results import UNTRUSTED_NOTE, UntrustedFence, ok
from mam_mcp.toolkit.runtime import Runtime
from mam_mcp.toolkit.toolsets import DELETE, READ, UPDATE, WRITE, Toolset

if TYPE_CHECKING:
    from mam_mcp.client.models import Inbox

toolset = Toolset("inbox_admin", "Inbox settings, addresses, keys, deletion and raw source.")

RAW_MAX_CHARS = 100_000


def _inbox_data(inbox: "Inbox") -> dict[str, Any]:
    # IMAP/SMTP credentials and keys the API returns are dropped here, never shown (DESIGN §3).
    return {
        "id": inbox.id,
        "email": inbox.email,
        "display_name": inbox.display_name,
        "workspace_id": inbox.workspace_id,
        "created_at": inbox.created_at,
        "addresses": [{"email": a.email, "primary": a.primary} for a in inbox.addresses or []],
        **({"expires_at": inbox.expires_at} if inbox.expires_at else {}),
    }


@toolset.tool(title="Get inbox", annotations=READ)
async def get_inbox(rt: Runtime, inbox_id: InboxId) -> CallToolResult:
    """Show an inbox's addresses (aliases, primary) and settings. Credentials are never shown."""
    inbox = await (await rt.client()).inboxes.get(inbox_id)
    data = _inbox_data(inbox)
    addresses = ", ".join(a["email"] + (" (primary)" if a["primary"] else "") for a in data["addresses"]) or inbox.email
    expiry = f" Deleted with its mail at {inbox.expires_at}." if inbox.expires_at else ""
    return ok(f"Inbox {inbox.id}: {addresses}.{expiry}", data)


@toolset.tool(title="Update inbox", annotations=UPDATE)
async def update_inbox(
    rt: Runtime,
    inbox_id: InboxId,
    display_name: Annotated[str, Field(max_length=100, pattern=r"^[^\r\n]*$")],
) -> CallToolResult:
    """Change an inbox's display name (the name shown in From)."""
    inbox = await (await rt.client()).inboxes.update(inbox_id, display_name=display_name)
    return ok(f"Inbox {inbox.id} display name is now {inbox.display_name!r}.", _inbox_data(inbox))


@toolset.tool(title="Delete inbox", annotations=DELETE)
async def delete_inbox(rt: Runtime, inbox_id: InboxId) -> CallToolResult:
    """Delete an inbox and its mail for good."""
    await (await rt.client()).inboxes.delete(inbox_id)
    return ok(f"Deleted inbox {inbox_id}.", {"id": inbox_id, "deleted": True})


@toolset.tool(title="Add inbox address", annotations=WRITE)
async def add_inbox_address(
    rt: Runtime,
    inbox_id: InboxId,
    email: EmailAddress,
    primary: Annotated[bool, Field(description="Use it as the From address.")] = False,
) -> CallToolResult:
    """Add an alias address (e.g. on a verified custom domain) that delivers into this inbox."""
    inbox = await (await rt.client()).inboxes.add_address(inbox_id, email=email, primary=primary or None)
    return ok(f"Inbox {inbox.id} now also receives mail for {email}.", _inbox_data(inbox))


@toolset.tool(title="Remove inbox address", annotations=DELETE)
async def remove_inbox_address(rt: Runtime, inbox_id: InboxId, email: EmailAddress) -> CallToolResult:
    """Remove an alias address from an inbox (the original address cannot be removed)."""
    inbox = await (await rt.client()).inboxes.remove_address(inbox_id, email)
    return ok(f"Removed {email} from inbox {inbox.id}.", _inbox_data(inbox))


@toolset.tool(title="Create inbox key", annotations=WRITE)
async def create_inbox_key(
    rt: Runtime, inbox_id: InboxId, name: Annotated[str | None, Field(max_length=100)] = None
) -> CallToolResult:
    """Mint an inbox-scoped ak_ key (least privilege for an agent). The key is written to a 0600 file, never shown."""
    key = await (await rt.client()).inboxes.create_key(inbox_id, name=name)
    secret = key.key or key.api_key
    data: dict[str, Any] = {"id": key.id, "inbox_id": inbox_id, "name": key.name, "prefix": key.prefix}
    if not secret:
        return ok(f"Created key {key.id} for inbox {inbox_id}; the API returned no key value.", data)
    path = rt.save_secret(f"inbox-key-{inbox_id}", secret)
    data["key_file"] = str(path)
    return ok(
        f"Created an ak_ key for inbox {inbox_id} and saved it to {path} (mode 0600). "
        "Give that file to the agent runtime (e.g. MYAGENTMAIL_API_KEY=$(cat FILE)); it is not shown here.",
        data,
    )


@toolset.tool(title="Delete message", annotations=DELETE)
async def delete_message(rt: Runtime, inbox_id: InboxId, message_id: MessageId) -> CallToolResult:
    """Delete a message from an inbox (soft delete: it disappears from lists)."""
    await (await rt.client()).messages.delete(inbox_id, message_id)
    return ok(f"Deleted message {message_id}.", {"id": message_id, "deleted": True})


@toolset.tool(title="Get raw message", annotations=READ)
async def get_raw_message(rt: Runtime, inbox_id: InboxId, message_id: MessageId) -> CallToolResult:
    """Get the raw RFC 822 source of an inbound message (headers included), e.g. to inspect authentication results."""
    raw = await (await rt.client()).messages.raw(inbox_id, message_id)
    text = raw.content.decode("utf-8", errors="replace")
    truncated = len(text) > RAW_MAX_CHARS
    text = text[:RAW_MAX_CHARS]
    fence = UntrustedFence()
    return ok(
        f"Raw source of {message_id} ({len(raw.content)} bytes){' [truncated]' if truncated else ''}. {UNTRUSTED_NOTE}\n"
        + fence.wrap(text),
        {"id": message_id, "size": len(raw.content), "raw": text, "truncated": truncated, "untrusted": True},
    )


@toolset.tool(title="Verify email address", annotations=READ)
async def verify_email(rt: Runtime, email: EmailAddress) -> CallToolResult:
    """Check that an address can receive mail (syntax and MX records) before sending to it."""
    result = await (await rt.client()).verify.email(email)
    verdict = "can receive mail" if result.valid else f"looks undeliverable ({result.reason})"
    return ok(f"{result.email} {verdict}.", result.model_dump(exclude_none=True))
