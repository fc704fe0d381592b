"""Idempotency of the create routes: one `Idempotency-Key` creates at most once, and a retry gets
the first answer again.

A create route hands `IdempotentRequests.run` its caller, route, key, a fingerprint of the request
and the function that creates. The first request with a key claims it (a record, committed before
anything is created), creates, and records the response; a retry with the same key, while the
first still runs, waits for it, then gets the recorded response (`replayed`). The same key with a
different request is 422 `IDEMPOTENCY_KEY_REUSED`. A request that failed (4xx/5xx) created
nothing: its claim is released and a retry runs again. A claim left unfinished by a crash answers
409 `IDEMPOTENCY_INTERRUPTED` (it may or may not have created: list to check).

Keys are scoped to the caller's API key (`owner` is its id): a replay goes to the credential that
made the request. One-time secrets (a webhook's signing secret, a minted API key) are part of the
first answer; the database record keeps the response WITHOUT them (API keys are stored only as
hashes; a copy of the key in clear would undo that), and this process keeps the full answer in
memory for the replay window, bounded in count and time. A retry served by a restarted daemon
therefore gets the object with its secret fields empty: the caller then knows it exists, and
rotates it if the secret is needed. Records expire after `RECORD_TTL_SECONDS`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio

from mam_mcp.local.service.errors import BackendError
from mam_mcp.local.store.requests import RequestRecordRepository
from mam_mcp.local.timestamps import iso_utc

__all__ = [
    "MAX_KEY_CHARS",
    "RECORD_TTL_SECONDS",
    "SEND_FINGERPRINT_FORMAT",
    "Created",
    "IdempotentRequests",
    "fingerprint",
]

RECORD_TTL_SECONDS = 24 * 3600
SECRET_MEMORY_SECONDS = 3600.0  # a retry comes within seconds; after an hour the secret is not kept
SECRET_MEMORY_ENTRIES = 1000
MAX_KEY_CHARS = 200

Owner = tuple[str, str, str]  # (caller's key id, route, Idempotency-Key)


@dataclass(frozen=True, slots=True)
class Created:
    """What a create route answers: HTTP status and JSON body; `replayed` for a retry's answer."""

    status: int
    body: dict[str, Any]
    replayed: bool = False


# A send's stored fingerprint starts with its format: a record of another format (a later release
# normalising bodies differently) is answered like one with no fingerprint, never refused.
SEND_FINGERPRINT_FORMAT = "json1:"


def fingerprint(method: str, path: str, query: str, body: bytes) -> str:
    """What makes two requests the same request: method, path, query and body bytes."""
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode(), query.encode(), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


class IdempotentRequests:
    def __init__(self, records: RequestRecordRepository, *, ttl_seconds: float = RECORD_TTL_SECONDS) -> None:
        self._records = records
        self._ttl = ttl_seconds
        # (owner, route, key) -> [lock, holders]; an entry lives while anyone holds or awaits its lock.
        self._locks: dict[Owner, list[Any]] = {}
        self._secrets: OrderedDict[Owner, tuple[float, dict[str, Any]]] = OrderedDict()

    async def run(
        self,
        *,
        owner: str,
        route: str,
        key: str | None,
        request_fingerprint: str,
        create: Callable[[], Awaitable[Created]],
        secret_fields: Sequence[str] = (),
    ) -> Created:
        """`create()` once per key; without a key, every time."""
        if key is None:
            return await create()
        if not 1 <= len(key) <= MAX_KEY_CHARS:
            raise BackendError.validation("Idempotency-Key", f"must be 1-{MAX_KEY_CHARS} characters")
        slot: Owner = (owner, route, key)
        entry = self._locks.setdefault(slot, [asyncio.Lock(), 0])
        entry[1] += 1
        try:
            async with entry[0]:
                previous = await self._previous(slot, request_fingerprint)
                if previous is not None:
                    return previous
                # From the claim to the record, nothing may stop half-way: a client that gave up
                # (its timeout) must not leave a created row without its record.
                with anyio.CancelScope(shield=True):
                    created = await self._create_once(slot, request_fingerprint, create, secret_fields)
                return created
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                self._locks.pop(slot, None)

    async def _previous(self, slot: Owner, request_fingerprint: str) -> Created | None:
        record = await self._records.get(*slot)
        if record is None or record.created_at < self._expired_before():
            return None
        if record.fingerprint != request_fingerprint:
            raise BackendError(
                422,
                "IDEMPOTENCY_KEY_REUSED",
                "this Idempotency-Key was used for a different request; use a new key for a new request",
            )
        if record.status is None:
            raise BackendError(
                409,
                "IDEMPOTENCY_INTERRUPTED",
                "a request with this Idempotency-Key was interrupted (the backend stopped); it may or may not "
                "have created the resource: list to check, then retry with a new key",
            )
        remembered = self._remembered(slot)
        body = remembered if remembered is not None else json.loads(record.body or "{}")
        return Created(record.status, body, replayed=True)

    async def _create_once(
        self,
        slot: Owner,
        request_fingerprint: str,
        create: Callable[[], Awaitable[Created]],
        secret_fields: Sequence[str],
    ) -> Created:
        if not await self._records.claim(
            *slot, request_fingerprint, now=iso_utc(datetime.now(UTC)), expired_before=self._expired_before()
        ):
            # Another process claimed it between our read and our claim (one daemon per data
            # directory makes this rare): answer from its record.
            previous = await self._previous(slot, request_fingerprint)
            if previous is not None:
                return previous
            raise BackendError(409, "IDEMPOTENCY_INTERRUPTED", "this Idempotency-Key is in use; retry shortly")
        try:
            created = await create()
        except BaseException:
            await self._records.release(*slot)  # nothing was created: a retry may run it again
            raise
        stored = {k: ("" if k in secret_fields and v else v) for k, v in created.body.items()}
        await self._records.finish(*slot, created.status, json.dumps(stored))
        if any(created.body.get(k) for k in secret_fields):
            self._remember(slot, created.body)
        return created

    def _expired_before(self) -> str:
        return iso_utc(datetime.now(UTC) - timedelta(seconds=self._ttl))

    def _remember(self, slot: Owner, body: dict[str, Any]) -> None:
        self._secrets[slot] = (time.monotonic() + SECRET_MEMORY_SECONDS, body)
        self._secrets.move_to_end(slot)
        while len(self._secrets) > SECRET_MEMORY_ENTRIES:
            self._secrets.popitem(last=False)

    def _remembered(self, slot: Owner) -> dict[str, Any] | None:
        now = time.monotonic()
        while self._secrets:  # drop the expired, oldest first (bounded by the entries held)
            oldest, (expires, _) = next(iter(self._secrets.items()))
            if expires > now:
                break
            del self._secrets[oldest]
        held = self._secrets.get(slot)
        return held[1] if held is not None else None
