"""Shared fixtures of the local backend: a real store in tmp_path, the app, a tenant key.

`local_backend` is meant for reuse by every end-to-end test of the local backend (SMTP,
WebSockets, webhooks, tools): it returns `(backend, app, tenant_key)` with DNS answered
from `FAKE_MX` (no network) and no relay (external sends are `captured`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import pytest
import pytest_asyncio
from starlette.applications import Starlette

from mam_mcp.local.app import create_app
from mam_mcp.local.backend import LocalBackend
from mam_mcp.local.config import LocalConfig
from mam_mcp.local.keys import mint_tenant_key
from mam_mcp.local.store import EmailStore

LocalBackendFixture = tuple[LocalBackend, Starlette, str]

FAKE_MX: dict[str, list[str]] = {"example.com": ["mx1.example.com"], "example.org": ["mx.example.org"]}
FAKE_TXT: dict[str, list[str]] = {}


async def fake_mx(domain: str) -> list[str]:
    return FAKE_MX.get(domain.lower(), [])


async def fake_txt(name: str) -> list[str]:
    return FAKE_TXT.get(name.lower(), [])


@pytest.fixture
def local_config(tmp_path: Path) -> LocalConfig:
    return LocalConfig(data_dir=tmp_path / "local", http_port=0, smtp_port=0)


@pytest_asyncio.fixture
async def local_backend(local_config: LocalConfig) -> AsyncIterator[LocalBackendFixture]:
    store = EmailStore(local_config)
    await store.open()
    try:
        tenant_key = await mint_tenant_key(store)
        backend = LocalBackend(local_config, store, mx_resolver=fake_mx, txt_resolver=fake_txt)
        yield backend, create_app(backend), tenant_key
    finally:
        await store.close()


@pytest_asyncio.fixture
async def local_api(local_backend: LocalBackendFixture) -> AsyncIterator[httpx2.AsyncClient]:
    """An in-process client of the app authenticated with the tenant key."""
    _, app, key = local_backend
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app), base_url="http://local.test", headers={"X-API-Key": key}
    ) as client:
        yield client
