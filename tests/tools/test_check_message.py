"""check_message through the in-memory MCP client: a DKIM-signed newsletter sent over real SMTP to the
real local backend, and the same source received by the strict hosted fake. DKIM keys are made here
and published through the Runtime's injected lookup: no DNS."""

from __future__ import annotations

import base64
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib
import dkim
import httpx2
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from mcp import Client

from mam_mcp.client import MamClient
from mam_mcp.config import Settings
from mam_mcp.local.smtp.ingress import SmtpIngress
from mam_mcp.server import build_server
from tests.conftest import make_settings
from tests.fakes.hosted_api import FakeHostedAPI
from tests.local.conftest import LocalBackendFixture, local_backend, local_config  # noqa: F401  (fixtures)

SELECTOR = b"news._domainkey.acme.example."
HTML = (
    '<html><body><img src="https://cdn.acme.example/banner.png">'
    "<p>Our November news.</p>"
    '<p><a href="https://evil.example/login">https://paypal.com/login</a></p>'
    '<p><a href="https://acme.example/blog/november">Read the post</a></p>'
    '<p><a href="https://acme.example/unsubscribe?u=7">Unsubscribe</a></p></body></html>'
)


def _newsletter(to: str) -> tuple[bytes, bytes]:
    """(signed raw message, DKIM key record) of a newsletter with a few things to find."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    message = EmailMessage()
    message["From"] = "Acme News <news@acme.example>"
    message["To"] = to
    message["Reply-To"] = "Acme Support <support@acme-help.example>"
    message["Subject"] = "Acme in November"
    message["Date"] = "Wed, 25 Nov 2026 11:00:00 +0000"
    message["Message-ID"] = "<nov-2026.7@acme.example>"
    message["List-Unsubscribe"] = "<https://acme.example/unsubscribe/one-click?u=7>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message.set_content("Our November news: https://acme.example/blog/november\n")
    message.add_alternative(HTML, subtype="html")
    raw = message.as_bytes(policy=message.policy.clone(linesep="\r\n"))
    headers = [
        b"from",
        b"to",
        b"subject",
        b"date",
        b"message-id",
        b"list-unsubscribe",
        b"list-unsubscribe-post",
    ]
    signature = dkim.sign(raw, b"news", b"acme.example", pem, include_headers=headers, linesep=b"\r\n")
    return signature + raw, b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)


def _lookup(record: bytes, asked: list[bytes]) -> Callable[..., bytes | None]:
    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        asked.append(name)
        return record if name == SELECTOR else None

    return lookup


@asynccontextmanager
async def _tools(
    settings: Settings, transport: httpx2.AsyncBaseTransport, key: str, lookup: Callable[..., bytes | None]
) -> AsyncIterator[Client]:
    async def factory(_: Settings) -> MamClient:
        return MamClient(base_url="http://backend.test", api_key=key, transport=transport)

    server = build_server(settings, client_factory=factory)
    server.runtime.dkim_txt_lookup = lookup  # type: ignore[attr-defined]
    async with Client(server) as client:
        yield client
    await server.runtime.aclose()  # type: ignore[attr-defined]


def _assert_reviewed(result: Any, message_id: str, asked: list[bytes]) -> None:
    assert not result.is_error, result.content[0].text
    data = result.structured_content
    statuses = {c["id"]: c["status"] for c in data["checks"]}
    assert statuses == {
        "links": "fail",
        "images_alt": "warn",
        "reply_to": "note",
        "text_part": "pass",
        "html": "pass",
        "list_unsubscribe": "pass",
        "message_id": "pass",
        "date": "pass",
        "from": "pass",
        "size": "pass",
        "dkim": "pass",
    }
    assert [d["result"] for d in data["dkim"]] == ["verified"] and asked == [SELECTOR]
    assert data["message_id"] == message_id and data["untrusted"] is True
    assert [(link["shown_host"], link["mismatch"]) for link in data["links"]][:2] == [
        ("paypal.com", True),
        (None, False),
    ]

    text = result.content[0].text
    ours, _, fenced = text.partition("<<<UNTRUSTED ")
    assert ours.startswith(f"Checked message {message_id} (")
    assert "1 problem(s), 1 to look at, 1 note(s), 8 passed" in ours
    assert (
        ours.index("FAIL links")
        < ours.index("WARN images_alt")
        < ours.index("NOTE reply_to")
        < ours.index("Passed:")
    )
    assert "Passed: text_part, html, list_unsubscribe, message_id, date, from, size, dkim." in ours
    # what the mail says stays inside the fence, and the whole answer stays short
    for quoted in ("paypal.com", "evil.example", "support@acme-help.example", "banner.png"):
        assert quoted not in ours and quoted in fenced
    assert len(text) < 1500


async def test_local_backend_mail_over_real_smtp(tmp_path: Path, local_backend: LocalBackendFixture) -> None:  # noqa: F811
    local, app, key = local_backend
    transport = httpx2.ASGITransport(app=app)
    async with MamClient(base_url="http://local.test", api_key=key, transport=transport) as api:
        inbox = (await api.inboxes.create(username="review")).wire()
    raw, record = _newsletter(inbox["email"])
    smtp = SmtpIngress(ingest=local.ingest, is_local_recipient=local.is_local_recipient, port=0)
    await smtp.start()
    try:
        await aiosmtplib.send(
            raw,
            sender="news@acme.example",
            recipients=[inbox["email"]],
            hostname="127.0.0.1",
            port=smtp.port,
            timeout=10,
        )
    finally:
        await smtp.stop()
    async with MamClient(base_url="http://local.test", api_key=key, transport=transport) as api:
        [message] = (await api.messages.list(inbox["id"])).messages
    asked: list[bytes] = []
    settings = make_settings(tmp_path, hosted=False, env={"MAM_MCP_MODE": "local"}, toolsets="email,testing")
    async with _tools(settings, transport, key, _lookup(record, asked)) as client:
        result = await client.call_tool("check_message", {"inbox_id": inbox["id"], "message_id": message.id})
    _assert_reviewed(result, message.id, asked)


async def test_hosted_raw_source(tmp_path: Path) -> None:
    fake = FakeHostedAPI()
    inbox = fake.seed_inbox("review")
    raw, record = _newsletter(inbox["email"])
    message = fake.deliver_inbound_raw(inbox["id"], raw)
    asked: list[bytes] = []
    async with _tools(
        make_settings(tmp_path, toolsets="testing"), fake.transport(), fake.api_key, _lookup(record, asked)
    ) as client:
        result = await client.call_tool(
            "check_message", {"inbox_id": inbox["id"], "message_id": message["id"]}
        )
    _assert_reviewed(result, message["id"], asked)
    assert [r.path for r in fake.requests if r.method == "GET"] == [
        f"/v1/inboxes/{inbox['id']}/messages/{message['id']}/raw"
    ]
    assert not fake.violations


async def test_a_tampered_mail_and_an_unpublished_key_are_told_apart(tmp_path: Path) -> None:
    fake = FakeHostedAPI()
    inbox = fake.seed_inbox("review")
    raw, record = _newsletter(inbox["email"])
    changed = raw.replace(b"Our November news: ", b"Our December news: ")
    assert changed != raw
    tampered = fake.deliver_inbound_raw(inbox["id"], changed)
    settings = make_settings(tmp_path, toolsets="testing")
    async with _tools(settings, fake.transport(), fake.api_key, _lookup(record, [])) as client:
        failed = await client.call_tool(
            "check_message", {"inbox_id": inbox["id"], "message_id": tampered["id"]}
        )
    ours, _, fenced = failed.content[0].text.partition("<<<UNTRUSTED ")
    assert "FAIL dkim: DKIM signature does not verify" in ours
    assert "d=acme.example s=news: failed, body hash mismatch" in fenced

    intact = fake.deliver_inbound_raw(inbox["id"], raw)
    async with _tools(
        settings, fake.transport(), fake.api_key, _lookup(b"", [])
    ) as client:  # key not published
        unknown = await client.call_tool(
            "check_message", {"inbox_id": inbox["id"], "message_id": intact["id"]}
        )
    text = unknown.content[0].text
    assert "NOTE dkim: DKIM-Signature present, not verified (its key could not be looked up)" in text
    assert unknown.structured_content["dkim"][0]["reason"] == "no key published for this selector"


async def test_an_outbound_message_has_no_raw_source_on_the_hosted_api(tmp_path: Path) -> None:
    fake = FakeHostedAPI()
    inbox = fake.seed_inbox("review")
    settings = make_settings(tmp_path, toolsets="email,testing")
    async with _tools(settings, fake.transport(), fake.api_key, _lookup(b"", [])) as client:
        sent = await client.call_tool(
            "send_email",
            {
                "inbox_id": inbox["id"],
                "to": ["lead@example.com"],
                "subject": "Hi",
                "body": "Hello",
                "verified": True,
            },
        )
        assert not sent.is_error, sent.content[0].text
        message_id = sent.structured_content["id"]
        result = await client.call_tool("check_message", {"inbox_id": inbox["id"], "message_id": message_id})
    assert result.is_error
    assert result.content[0].text.startswith("NOT_FOUND: ") and "Hint:" in result.content[0].text


@pytest.mark.parametrize("toolsets", [None, "all"])
def test_check_message_is_not_default_and_loads_no_dkim_until_called(
    tmp_path: Path, toolsets: str | None
) -> None:
    selected = f", toolsets={toolsets!r}" if toolsets else ""
    probe = (
        "import json, pathlib, sys\n"
        "import anyio\n"
        "from mcp import Client\n"
        "from mam_mcp.server import build_server\n"
        "from tests.conftest import make_settings\n"
        f"server = build_server(make_settings(pathlib.Path({str(tmp_path)!r}){selected}))\n"
        "async def names():\n"
        "    async with Client(server) as client:\n"
        "        return [t.name for t in (await client.list_tools()).tools]\n"
        "listed = anyio.run(names)\n"
        "print(json.dumps(['check_message' in listed, [m for m in ('dkim', 'dns') if m in sys.modules]]))\n"
    )
    root = Path(__file__).resolve().parents[2]  # the repository: the probe imports tests.conftest
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd=root, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == ("[true, []]" if toolsets == "all" else "[false, []]")
