"""Shared fixtures of the local backend: a real store in tmp_path, the app, a tenant key.

`local_backend` is meant for reuse by every end-to-end test of the local backend (SMTP,
WebSockets, webhooks, tools): it returns `(backend, app, tenant_key)` with DNS answered
from `FAKE_MX` (no network) and no relay (external sends are `captured`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest
import pytest_asyncio
from starlette.applications import Starlette

from mam_mcp.local.api.app import create_app
from mam_mcp.local.auth.keys import mint_tenant_key
from mam_mcp.local.config import LocalConfig
from mam_mcp.local.service.backend import LocalBackend
from mam_mcp.local.store.email_store import EmailStore

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


class RecordingRelay:
    """An OutboundRelay that records what it was given, or refuses as told (permanent or not)."""

    def __init__(self, *, reject: bool | None = None) -> None:
        self.sent: list[tuple[str, list[str], bytes]] = []
        self.reject = reject  # None: accept; True: permanent 5xx; False: temporary 4xx

    async def send(self, mail_from: str, rcpts: list[str], raw: bytes) -> None:
        from mam_mcp.local.relay.smtp_relay import RelayRefused

        if self.reject is not None:
            raise RelayRefused(self.reject, "550 no such user" if self.reject else "451 try later")
        self.sent.append((mail_from, rcpts, raw))


@pytest_asyncio.fixture
async def relay(local_backend: LocalBackendFixture) -> RecordingRelay:
    """Installs a RecordingRelay on the local_backend fixture's backend."""
    recording = RecordingRelay()
    local_backend[0].relay = recording
    return recording


@pytest.fixture
def make_inbox(local_api: httpx2.AsyncClient) -> Callable[..., Awaitable[dict[str, Any]]]:
    """Creates an inbox through the API (tenant key) and returns its JSON (with the revealed ak_ key)."""

    async def create(username: str, **fields: Any) -> dict[str, Any]:
        response = await local_api.post("/v1/inboxes?reveal=true", json={"username": username, **fields})
        assert response.status_code == 201, response.text
        data: dict[str, Any] = response.json()
        return data

    return create
