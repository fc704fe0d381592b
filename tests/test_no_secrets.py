"""No secret (API key, inbox key, password, webhook secret) in tool output, logs or errors, with logging at DEBUG."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

from mcp import Client

from mam_mcp.client import MamClient
from mam_mcp.config import Settings
from mam_mcp.logs import configure_logging, redact
from mam_mcp.server import build_server
from tests.conftest import make_settings
from tests.fakes.hosted_api import FakeHostedAPI

TENANT_KEY = "tk_secret_Zq8Xc2Vb7Nm4Lk1Jh6Gf3Ds9"


def test_redaction_covers_keys_headers_urls_and_query_strings() -> None:
    line = (
        f"GET https://myagentmail.com/v1/ws?api_key={TENANT_KEY} X-API-Key: ak_inbox_7Hj2Kl9Mn3Bv "
        "Authorization: Bearer wk_ws_Pq4Rs6Tu8Vw0 relay smtp+starttls://bob:hunter2pass@smtp.example.com:587 "
        "password=hunter2pass"
    )
    cleaned = redact(line)
    for secret in (TENANT_KEY, "ak_inbox_7Hj2Kl9Mn3Bv", "wk_ws_Pq4Rs6Tu8Vw0", "hunter2pass"):
        assert secret not in cleaned
    assert "smtp.example.com" in cleaned and "myagentmail.com/v1/ws" in cleaned


def test_redaction_takes_whole_url_safe_secrets_and_passwords_with_a_raw_at() -> None:
    line = "webhook whsec_Ab3dEf-Gh_IjKlMnOpQ-rs relay smtps://bob:p@ss-word@smtp.example.com:465 done"
    cleaned = redact(line)
    for fragment in ("Gh_IjKlMnOpQ", "-rs ", "p@ss", "ss-word"):
        assert fragment not in cleaned, cleaned
    assert "smtp.example.com:465" in cleaned and cleaned.endswith(" done")


async def test_no_secret_in_tool_output_logs_or_errors_at_debug(tmp_path: Path) -> None:
    fake = FakeHostedAPI(api_key=TENANT_KEY)
    inbox = fake.seed_inbox("agent")
    inbox_key = fake.add_inbox_key(inbox["id"])
    message = fake.deliver_inbound(inbox["id"], from_address="jane@example.com", subject="hi", plain_body="hello")
    stream = io.StringIO()
    relay_password = "relay-pass-Xy9"
    settings = make_settings(
        tmp_path, env={"MYAGENTMAIL_API_KEY": TENANT_KEY, "MAM_SMTP_RELAY_URL": f"smtps://u:{relay_password}@relay.example:465"},
        log_level="DEBUG",
    )

    async def factory(s: Settings) -> MamClient:
        return MamClient(base_url="http://fake", api_key=s.api_key.get_secret_value(), transport=fake.transport())

    server = build_server(settings, client_factory=factory)
    configure_logging("DEBUG", stream=stream)
    logging.getLogger("httpx2").setLevel(logging.DEBUG)  # worst case: request URLs and headers logged
    outputs: list[str] = []
    try:
        async with Client(server) as client:
            calls = [
                ("create_inbox", {"username": "second"}),
                ("list_inboxes", {}),
                ("list_messages", {"inbox_id": inbox["id"]}),
                ("get_message", {"inbox_id": inbox["id"], "message_id": message["id"]}),
                ("send_email", {"inbox_id": inbox["id"], "to": ["x@example.com"], "subject": "s", "body": "b"}),
                ("get_message", {"inbox_id": inbox["id"], "message_id": "missing"}),
            ]
            fake.script("GET", "/v1/inboxes", status=401, code="AUTH_INVALID", message="bad key")
            calls.append(("list_inboxes", {}))
            for name, args in calls:
                result = await client.call_tool(name, args)
                outputs.append(json.dumps(result.model_dump(mode="json", by_alias=True)))
            logging.getLogger("mam_mcp.test").debug("settings at debug: %r", settings)
    finally:
        await server.runtime.aclose()  # type: ignore[attr-defined]
        logging.getLogger("httpx2").setLevel(logging.WARNING)
        configure_logging("WARNING", stream=io.StringIO())
    logs = stream.getvalue()
    assert "settings at debug" in logs, "the log capture works"
    everything = "\n".join(outputs) + logs
    for secret in (TENANT_KEY, inbox_key, relay_password, "seeded-imap-password"):
        assert secret not in everything, f"secret leaked: {secret[:6]}…"


async def test_inbox_model_drops_imap_and_smtp_passwords_from_repr_and_dumps() -> None:
    fake = FakeHostedAPI(api_key=TENANT_KEY)
    inbox = fake.seed_inbox("agent")
    async with MamClient(base_url="http://fake", api_key=TENANT_KEY, transport=fake.transport()) as client:
        fetched = await client.inboxes.get(inbox["id"])  # GET /inboxes/:id carries IMAP/SMTP credentials
    assert fetched.email == inbox["email"]
    shown = " ".join((repr(fetched), str(fetched), json.dumps(fetched.model_dump(mode="json")), json.dumps(fetched.wire())))
    assert "seeded-imap-password" not in shown
