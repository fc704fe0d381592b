"""API keys of the local backend: minting, hashing, authentication and failed-auth lockout.

Keys are `tk_` (tenant), `wk_` (workspace) and `ak_` (one inbox; `mam_` is the legacy
spelling of the same scope). Only SHA-256 hashes and a short display prefix are stored.
Lockout is keyed by the presented key, not the client IP: everything local is 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from mam_mcp.local.auth.scope import KeyKind, KeyScope
from mam_mcp.local.store.accounts import KeyRecord
from mam_mcp.local.store.email_store import EmailStore

__all__ = [
    "FailedAuthLockout",
    "KeyRing",
    "MintedKey",
    "display_prefix",
    "generate_key",
    "hash_key",
    "kind_of",
    "mint_tenant_key",
]

LOCKOUT_FAILURES = 20
LOCKOUT_WINDOW_SECONDS = 60.0
LOCKOUT_SECONDS = 15 * 60.0
_MAX_TRACKED = 10_000  # bounded memory under a flood of random keys
_PREFIX_KIND: dict[str, KeyKind] = {"tk_": "tk", "wk_": "wk", "ak_": "ak", "mam_": "ak"}


def generate_key(kind: KeyKind) -> str:
    return f"{kind}_{secrets.token_urlsafe(32)}"


def hash_key(presented: str) -> str:
    return hashlib.sha256(presented.encode("utf-8", "surrogatepass")).hexdigest()


def display_prefix(key: str) -> str:
    """Enough to tell keys apart in a list, far too little to use."""
    return key[:10]


def kind_of(presented: str) -> KeyKind | None:
    for prefix, kind in _PREFIX_KIND.items():
        if presented.startswith(prefix):
            return kind
    return None


class FailedAuthLockout:
    """20 failures of the same presented key within 60 s lock that key for 15 minutes."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._locked_until: dict[str, float] = {}

    def locked_for(self, key_hash: str) -> float:
        """Seconds left on this key's lockout (0 when not locked)."""
        until = self._locked_until.get(key_hash)
        if until is None:
            return 0.0
        left = until - self._clock()
        if left <= 0:
            del self._locked_until[key_hash]
            return 0.0
        return left

    def record_failure(self, key_hash: str) -> None:
        now = self._clock()
        window = self._failures.pop(key_hash, None) or deque()
        window.append(now)
        while window and now - window[0] > LOCKOUT_WINDOW_SECONDS:
            window.popleft()
        if len(window) >= LOCKOUT_FAILURES:
            self._locked_until[key_hash] = now + LOCKOUT_SECONDS
            window.clear()
        self._failures[key_hash] = window
        while len(self._failures) > _MAX_TRACKED:
            self._failures.popitem(last=False)
        if len(self._locked_until) > _MAX_TRACKED:
            for stale in [k for k, until in self._locked_until.items() if until <= now]:
                del self._locked_until[stale]


@dataclass(frozen=True, slots=True)
class MintedKey:
    """A freshly minted key: `key` is the secret, shown once and never stored."""

    id: str
    key: str
    kind: KeyKind
    name: str | None
    prefix: str
    created_at: str


class KeyRing:
    """Mints, authenticates and revokes keys; active keys are cached in memory by hash."""

    def __init__(self, store: EmailStore, *, lockout: FailedAuthLockout | None = None) -> None:
        self._store = store
        self.lockout = lockout or FailedAuthLockout()
        # Loaded once here; afterwards every mint and revoke goes through this ring (one daemon per data dir).
        self._by_hash: dict[str, KeyRecord] = {r.key_hash: r for r in store.accounts.active_keys_sync()}

    async def reload(self) -> None:
        """Re-read active keys (keys minted by another KeyRing on the same store)."""
        self._by_hash = {record.key_hash: record for record in await self._store.accounts.active_keys()}

    def lockout_seconds(self, presented: str) -> float:
        return self.lockout.locked_for(hash_key(presented))

    def authenticate(self, presented: str) -> KeyScope | None:
        """The scope of a valid, unrevoked, not-locked-out key; None otherwise (failures counted)."""
        if not presented or len(presented) > 512:
            return None
        digest = hash_key(presented)
        if self.lockout.locked_for(digest) > 0:
            return None
        record = self._by_hash.get(digest)
        if (
            record is None
            or kind_of(presented) != record.kind
            or not hmac.compare_digest(digest, record.key_hash)
        ):
            self.lockout.record_failure(digest)
            return None
        return KeyScope(
            kind=record.kind,
            key_id=record.id,
            tenant_id=record.tenant_id,
            workspace_id=record.workspace_id,
            inbox_id=record.inbox_id,
        )

    async def mint(
        self,
        kind: KeyKind,
        *,
        tenant_id: str,
        workspace_id: str | None = None,
        inbox_id: str | None = None,
        name: str | None = None,
    ) -> MintedKey:
        key = generate_key(kind)
        digest = hash_key(key)
        row = await self._store.accounts.insert_key(
            kind=kind,
            tenant_id=tenant_id,
            workspace_id=workspace_id,
            inbox_id=inbox_id,
            name=name,
            prefix=display_prefix(key),
            key_hash=digest,
        )
        self._by_hash[digest] = KeyRecord(row["id"], kind, tenant_id, workspace_id, inbox_id, digest)
        return MintedKey(row["id"], key, kind, name, row["prefix"], row["created_at"])

    async def create_tenant(self) -> tuple[str, MintedKey]:
        """A new tenant and its tk_ key (tests of isolation; the daemon uses mint_tenant_key)."""
        tenant_id = await self._store.accounts.create_tenant()
        return tenant_id, await self.mint("tk", tenant_id=tenant_id, name="tenant")

    async def mint_tenant_key(self) -> str:
        """A tk_ key for the first tenant, creating the tenant on first start."""
        tenant_id = await self._store.accounts.first_tenant() or await self._store.accounts.create_tenant()
        return (await self.mint("tk", tenant_id=tenant_id, name="local daemon")).key

    async def revoke(self, key_id: str) -> None:
        await self._store.accounts.revoke_key(key_id)
        self.forget(lambda record: record.id == key_id)

    def forget(self, predicate: Callable[[KeyRecord], bool]) -> None:
        """Drop cached keys (after their inbox or workspace was deleted)."""
        for digest in [d for d, record in self._by_hash.items() if predicate(record)]:
            del self._by_hash[digest]


async def mint_tenant_key(store: EmailStore) -> str:
    """A tk_ key for the first tenant (created on first start); the daemon stores it with mode 0600.

    Call before building the LocalBackend (its KeyRing loads active keys when built) or call
    `KeyRing.reload()` afterwards.
    """
    return await KeyRing(store).mint_tenant_key()
