"""API keys in the store: hashes only, scoped, revocable; a key works with its own prefix only."""

from __future__ import annotations

import sqlite3

from mam_mcp.local.auth.keys import KeyRing, hash_key, mint_tenant_key
from mam_mcp.local.config import LocalConfig
from mam_mcp.local.store.email_store import EmailStore


async def test_keys_are_stored_hashed_and_scoped(local_config: LocalConfig) -> None:
    store = EmailStore(local_config)
    await store.open()
    first = await mint_tenant_key(store)
    second = await mint_tenant_key(store)  # a lost key file: same tenant, new key
    ring = KeyRing(store)
    scope_a, scope_b = ring.authenticate(first), ring.authenticate(second)
    assert scope_a is not None and scope_b is not None and scope_a.kind == "tk"
    assert scope_a.tenant_id == scope_b.tenant_id
    conn = sqlite3.connect(local_config.db_path)
    stored = [row[0] for row in conn.execute("SELECT key_hash FROM api_keys")]
    dump = "\n".join(conn.iterdump())
    conn.close()
    assert hash_key(first) in stored and first not in dump and second not in dump
    mam_alias = "mam_" + first.removeprefix("tk_")
    assert ring.authenticate(mam_alias) is None  # a key only works with its own prefix
    await ring.revoke(scope_a.key_id)
    assert ring.authenticate(first) is None
    await ring.reload()
    assert ring.authenticate(first) is None and ring.authenticate(second) is not None
    await store.close()
