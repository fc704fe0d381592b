"""What the REST routes do with one inbox's mail: messages, threads, attachments and drafts.

Every method takes an inbox the caller may see (`api/access.py` resolved it) and answers 404
`NOT_FOUND` for an id that is not in that inbox, the same way everywhere. Rows are the store's
plain dicts; the wire shapes are the API's (`api/wire.py`).
"""

from __future__ import annotations

from typing import Any

from mam_mcp.local.service.errors import BackendError
from mam_mcp.local.store.directory import MAX_TAG_CHARS
from mam_mcp.local.store.email_store import EmailStore

__all__ = ["MAX_TAG_CHARS", "MailboxService"]

Row = dict[str, Any]


class MailboxService:
    def __init__(self, store: EmailStore) -> None:
        self._mail = store.mail

    # ------------------------------------------------------------ messages

    async def messages(
        self,
        inbox_id: str,
        *,
        direction: str | None,
        unread: bool | None,
        from_contains: str | None,
        subject_contains: str | None,
        q: str | None,
        after: str | None,
        tag: str | None = None,
        to: str | None = None,
        limit: int,
        offset: int,
    ) -> list[Row]:
        """`tag`: mail that came to the inbox's address with `+tag`; `to`: mail to that address."""
        return await self._mail.list_messages(
            inbox_id, direction=direction, unread=unread, from_contains=from_contains,
            subject_contains=subject_contains, q=q, after=after, tag=tag, to=to, limit=limit, offset=offset,
        )  # fmt: skip

    async def message(self, inbox_id: str, message_id: str, *, mark_read: bool = False) -> Row:
        row = await self._mail.get_message(inbox_id, message_id, mark_read=mark_read)
        if row is None:
            raise BackendError.not_found("message")
        return row

    async def mark(self, inbox_id: str, message_id: str, is_read: bool) -> Row:
        if not await self._mail.set_read(inbox_id, message_id, is_read):
            raise BackendError.not_found("message")
        return await self.message(inbox_id, message_id)

    async def delete_message(self, inbox_id: str, message_id: str) -> None:
        if not await self._mail.soft_delete(inbox_id, message_id):
            raise BackendError.not_found("message")

    async def raw(self, inbox_id: str, message_id: str) -> bytes:
        raw = await self._mail.get_raw(inbox_id, message_id)
        if raw is None:
            raise BackendError.not_found("raw message")
        return raw

    async def attachments(self, inbox_id: str, message_id: str) -> list[Row]:
        rows = await self._mail.list_attachments(inbox_id, message_id)
        if rows is None:
            raise BackendError.not_found("message")
        return rows

    async def attachment(self, inbox_id: str, message_id: str, attachment_id: str) -> Row:
        row = await self._mail.get_attachment(inbox_id, message_id, attachment_id)
        if row is None:
            raise BackendError.not_found("attachment")
        return row

    # ------------------------------------------------------------ threads

    async def threads(self, inbox_id: str, *, limit: int, offset: int) -> list[Row]:
        return await self._mail.list_threads(inbox_id, limit=limit, offset=offset)

    async def thread(self, inbox_id: str, thread_id: str, *, limit: int | None, offset: int) -> Row:
        row = await self._mail.get_thread(inbox_id, thread_id, limit=limit, offset=offset)
        if row is None:
            raise BackendError.not_found("thread")
        return row

    # ------------------------------------------------------------ drafts

    async def check_reply_target(self, inbox_id: str, message_id: str | None) -> None:
        """400 unless a draft's `replyToMessageId` is a message of this inbox."""
        if message_id and await self._mail.get_message(inbox_id, message_id) is None:
            raise BackendError.validation("replyToMessageId", "no such message in this inbox")

    async def create_draft(self, inbox_id: str, fields: Row) -> Row:
        return await self._mail.create_draft(inbox_id, fields)

    async def drafts(self, inbox_id: str, *, limit: int, offset: int) -> list[Row]:
        return await self._mail.list_drafts(inbox_id, limit=limit, offset=offset)

    async def draft(self, inbox_id: str, draft_id: str) -> Row:
        row = await self._mail.get_draft(inbox_id, draft_id)
        if row is None:
            raise BackendError.not_found("draft")
        return row

    async def update_draft(self, inbox_id: str, draft_id: str, fields: Row) -> Row:
        if not await self._mail.update_draft(inbox_id, draft_id, fields):
            raise BackendError.not_found("draft")
        return await self.draft(inbox_id, draft_id)

    async def delete_draft(self, inbox_id: str, draft_id: str) -> None:
        if not await self._mail.delete_draft(inbox_id, draft_id):
            raise BackendError.not_found("draft")
