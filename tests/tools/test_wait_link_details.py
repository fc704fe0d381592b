"""wait_for_email says what each link is for: a Safe-Links-wrapped verify link and an unsubscribe link,
delivered over real SMTP to the local backend and through the strict hosted fake."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
from mcp import Client

from mam_mcp.client import MamClient
from mam_mcp.config import Settings
from mam_mcp.server import build_server
from tests.conftest import make_settings
from tests.event_stack import hosted_stack, local_stack
from tests.fakes.hosted_api import FakeHostedAPI
from tests.local.conftest import local_backend, local_config  # noqa: F401  (fixtures)

DESTINATION = "https://app.acme.example/verify?token=a7c9e2f41b&uid=30112"
WRAPPED = (
    f"https://nam12.safelinks.protection.outlook.com/?url={quote(DESTINATION, safe='')}"
    "&data=05%7C02%7Csam%40contoso.example%7C3f2a9c1b&sdata=Qk9xT2lQ%3D&reserved=0"
)
UNSUBSCRIBE = "https://acme.example/unsubscribe?u=30112"
SUBJECT = "Verify your email for Acme"
PLAIN = f"Please verify your email address:\n{WRAPPED}\n\nUnsubscribe: {UNSUBSCRIBE}\n"
HTML = (
    f'<p>Please verify your email address.</p><p><a href="{WRAPPED.replace("&", "&amp;")}">Verify email</a></p>'
    f'<p><a href="{UNSUBSCRIBE}">Unsubscribe</a></p>'
)


def _mail(to: str) -> bytes:
    message = EmailMessage()
    message["From"] = "Acme <noreply@acme.example>"
    message["To"] = to
    message["Subject"] = SUBJECT
    message.set_content(PLAIN)
    message.add_alternative(HTML, subtype="html")
    return message.as_bytes()


async def _wait(settings: Settings, client: MamClient, inbox_id: str) -> Any:
    async def factory(_: Settings) -> MamClient:
        return client

    server = build_server(settings, client_factory=factory)
    async with Client(server) as mcp:
        with anyio.fail_after(15):
            result = await mcp.call_tool("wait_for_email", {"inbox_id": inbox_id, "timeout_seconds": 10})
    await server.runtime.aclose()  # type: ignore[attr-defined]
    return result


def _assert_links_classified(result: Any) -> None:
    assert not result.is_error, result.content[0].text
    data = result.structured_content
    assert data["links"] == [DESTINATION]  # unwrapped; the unsubscribe link is never in `links`
    assert data["link_details"] == [
        {
            "url": DESTINATION,
            "kind": "verify",
            "reason": "URL has 'verify'",
            "text": "Verify email",
            "unwrapped_from": "outlook_safelinks",
        },
        {"url": UNSUBSCRIBE, "kind": "unsubscribe", "reason": "URL has 'unsubscribe'", "text": "Unsubscribe"},
    ]
    text = result.content[0].text
    assert f"[verify] {DESTINATION}" in text
    # the text part stays short: one tag per link, no reasons, no wrapper, no unsubscribe link
    assert "safelinks" not in text.split("Links:")[1] and "reason" not in text and "[unsubscribe]" not in text


async def test_local_backend_over_real_smtp(tmp_path: Path, local_backend: Any) -> None:  # noqa: F811
    async with local_stack(local_backend) as stack:
        inbox = await stack.create_inbox("signup")
        reply = await stack.send_smtp(inbox["email"], _mail(inbox["email"]), "noreply@acme.example")
        assert reply.startswith("2")
        result = await _wait(make_settings(tmp_path, hosted=False), stack.client(), inbox["id"])
    _assert_links_classified(result)


async def test_hosted_api(tmp_path: Path) -> None:
    fake = FakeHostedAPI()
    inbox = fake.seed_inbox("signup")
    fake.deliver_inbound(
        inbox["id"], from_address="noreply@acme.example", subject=SUBJECT, plain_body=PLAIN, html_body=HTML
    )
    async with hosted_stack(fake) as stack:
        result = await _wait(make_settings(tmp_path), stack.client(), inbox["id"])
    _assert_links_classified(result)
    assert not fake.violations
