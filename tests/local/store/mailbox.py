"""A store with one inbox (bob@mam.localhost) and plain mail for it, for the store's tests."""

from __future__ import annotations

from mam_mcp.local.config import LocalConfig
from mam_mcp.local.store.email_store import EmailStore

__all__ = ["mail", "store_with_inbox"]


def mail(
    subject: str, *, msg_id: str, to: str = "bob@mam.localhost", extra: str = "", body: str = "hello"
) -> bytes:
    return (
        f"From: Alice <alice@example.com>\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: {msg_id}\r\n{extra}\r\n{body}"
    ).encode()


async def store_with_inbox(config: LocalConfig) -> tuple[EmailStore, str]:
    store = EmailStore(config)
    await store.open()
    tenant = await store.accounts.create_tenant()
    inbox = await store.accounts.create_inbox(
        tenant_id=tenant, workspace_id=None, username="bob", domain="mam.localhost", display_name=None
    )
    return store, inbox["id"]
