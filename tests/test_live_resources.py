"""Live resources: `resources/subscribe` (handshake era) and `subscriptions/listen` (2026-07-28) on an
inbox's message list, with mail delivered over real SMTP to the real local backend.

In process: the MCP server over the SDK's in-memory client, the local backend with its WebSocket
hub and a real aiosmtpd listener (tests/event_stack.py). Over stdio: a real `mam-mcp serve`
subprocess that starts the real daemon.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib
import anyio
import pytest
from anyio.streams.memory import MemoryObjectSendStream
from mcp import Client, StdioServerParameters
from mcp.shared.exceptions import MCPError
from mcp_types import ResourceUpdatedNotification

from mam_mcp.client import MamClient
from mam_mcp.config import Settings
from mam_mcp.live_resources import inbox_messages_uri, inbox_of_uri
from mam_mcp.server import build_server
from mam_mcp.toolkit.results import UNTRUSTED_NOTE
from tests.conftest import make_settings
from tests.event_stack import LocalStack, hosted_stack, local_stack, until, verification_mail
from tests.fakes.hosted_api import FakeHostedAPI
from tests.local.conftest import local_backend, local_config  # noqa: F401  (fixtures)
from tests.local.daemon_process import kill_pid

pytestmark = pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")  # the older era

WAIT = 15.0


def _updates_into(send: MemoryObjectSendStream[str]):  # type: ignore[no-untyped-def]
    async def handler(message: Any) -> None:
        if isinstance(message, ResourceUpdatedNotification):
            await send.send(str(message.params.uri))

    return handler


@asynccontextmanager
async def _mcp(tmp_path: Path, stack: LocalStack, **client_args: Any) -> AsyncIterator[tuple[Client, Any]]:
    async def factory(settings: Settings) -> MamClient:
        return stack.client()

    server = build_server(make_settings(tmp_path, hosted=False), client_factory=factory)
    try:
        async with Client(server, **client_args) as client:
            yield client, server
    finally:
        await server.runtime.aclose()  # type: ignore[attr-defined]


def test_inbox_message_list_uris() -> None:
    assert inbox_messages_uri("abc-1") == "myagentmail://inboxes/abc-1/messages"
    assert inbox_of_uri("myagentmail://inboxes/abc-1/messages") == "abc-1"
    for other in (
        "myagentmail://inboxes/abc/messages/m1",
        "myagentmail://skill/SKILL.md",
        "myagentmail://inboxes//messages",
        "myagentmail://inboxes/a/b/messages",
        "https://inboxes/abc/messages",
    ):
        assert inbox_of_uri(other) is None, other


async def test_subscribe_notifies_on_mail_and_unsubscribe_and_session_end_stop_it(
    tmp_path: Path, local_backend: Any  # noqa: F811
) -> None:
    send, updates = anyio.create_memory_object_stream[str](100)
    async with local_stack(local_backend) as stack:
        inbox = await stack.create_inbox("live")
        other = await stack.create_inbox("quiet")
        uri = inbox_messages_uri(inbox["id"])
        async with _mcp(tmp_path, stack, mode="legacy", message_handler=_updates_into(send)) as (client, _):
            assert client.server_capabilities.resources is not None
            assert client.server_capabilities.resources.subscribe is True
            templates = {t.uri_template for t in (await client.list_resource_templates()).resource_templates}
            assert "myagentmail://inboxes/{inbox_id}/messages" in templates

            empty = (await client.read_resource(uri)).contents[0].text  # type: ignore[union-attr]
            assert "0 message(s)" in empty and "No mail yet." in empty

            await client.subscribe_resource(uri)
            assert stack.hub.subscriber_count == 1  # answered once the inbox is followed: nothing is missed
            # Mail to an inbox nobody follows says nothing; mail to the followed one says its URI.
            for target, subject in ((other, "Not this one"), (inbox, "Your code")):
                mail = verification_mail("a@acme.example.com", target["email"], subject=subject)
                assert (await stack.send_smtp(target["email"], mail)).startswith("2")
            with anyio.fail_after(WAIT):
                assert await updates.receive() == uri

            text = (await client.read_resource(uri)).contents[0].text  # type: ignore[union-attr]
            assert "1 message(s), newest first" in text and UNTRUSTED_NOTE in text
            fenced = text.split("<<<UNTRUSTED ", 1)[1]
            assert "Your code" in fenced and "a@acme.example.com" in fenced and "[unread]" in fenced
            assert "Your code" not in text.split("<<<UNTRUSTED ", 1)[0], "mail content stays inside the fence"
            assert "Not this one" not in text

            # Subscribing twice is one subscription; unsubscribing stops following the inbox.
            await client.subscribe_resource(uri)
            await client.unsubscribe_resource(uri)
            await until(lambda: stack.hub.subscriber_count == 0, timeout=WAIT)

            # A second subscription ends with the session.
            await client.subscribe_resource(uri)
            assert stack.hub.subscriber_count == 1
        await until(lambda: stack.hub.subscriber_count == 0, timeout=WAIT)
    assert updates.statistics().current_buffer_used == 0, "one mail, one notification"


async def test_subscribing_to_what_is_no_inbox_list_is_a_clear_error(
    tmp_path: Path, local_backend: Any  # noqa: F811
) -> None:
    async with local_stack(local_backend) as stack:
        async with _mcp(tmp_path, stack, mode="legacy") as (client, _):
            with pytest.raises(MCPError) as missing:
                await client.subscribe_resource(inbox_messages_uri("no-such-inbox"))
            assert missing.value.error.message.startswith("NOT_FOUND:") and "Hint:" in missing.value.error.message
            with pytest.raises(MCPError) as other:
                await client.subscribe_resource("myagentmail://skill/SKILL.md")
            assert other.value.error.message.startswith("VALIDATION_ERROR: uri: only an inbox's message list")
            assert "myagentmail://inboxes/{inbox_id}/messages" in other.value.error.message
        assert stack.hub.subscriber_count == 0


async def test_listen_stream_gets_resource_updated_for_the_named_inbox(
    tmp_path: Path, local_backend: Any  # noqa: F811
) -> None:
    async with local_stack(local_backend) as stack:
        inbox = await stack.create_inbox("live")
        uri = inbox_messages_uri(inbox["id"])
        async with _mcp(tmp_path, stack) as (client, _):  # the 2026-07-28 protocol
            assert client.server_capabilities.resources is not None
            assert client.server_capabilities.resources.subscribe is True
            async with client.listen(resource_subscriptions=[uri]) as subscription:
                assert stack.hub.subscriber_count == 1
                reply = await stack.send_smtp(inbox["email"], verification_mail("a@acme.example.com", inbox["email"]))
                assert reply.startswith("2")
                with anyio.fail_after(WAIT):
                    event = await subscription.__anext__()
                assert getattr(event, "uri", None) == uri
                text = (await client.read_resource(uri)).contents[0].text  # type: ignore[union-attr]
                assert "Confirm your Acme account" in text.split("<<<UNTRUSTED ", 1)[1]
            await until(lambda: stack.hub.subscriber_count == 0, timeout=WAIT)


async def test_hosted_mode_follows_the_inbox_over_the_hosted_event_stream(tmp_path: Path) -> None:
    fake = FakeHostedAPI()
    inbox = fake.seed_inbox("live")
    uri = inbox_messages_uri(inbox["id"])
    send, updates = anyio.create_memory_object_stream[str](100)
    async with hosted_stack(fake) as stack:

        async def factory(settings: Settings) -> MamClient:
            return stack.client()

        server = build_server(make_settings(tmp_path), client_factory=factory)
        try:
            async with Client(server, mode="legacy", message_handler=_updates_into(send)) as client:
                await client.subscribe_resource(uri)
                assert fake.hub.subscriber_count == 1
                fake.deliver_inbound(inbox["id"], from_address="jane@example.com", subject="Hosted hello", plain_body="Hi")
                with anyio.fail_after(WAIT):
                    assert await updates.receive() == uri
                text = (await client.read_resource(uri)).contents[0].text  # type: ignore[union-attr]
                assert "Hosted hello" in text.split("<<<UNTRUSTED ", 1)[1]
        finally:
            await server.runtime.aclose()  # type: ignore[attr-defined]
        await until(lambda: fake.hub.subscriber_count == 0, timeout=WAIT)
    assert fake.violations == []


# ---------------------------------------------------------------- a real stdio subprocess, a real daemon


def _serve_params(tmp_path: Path) -> StdioServerParameters:
    script = Path(sys.executable).with_name("mam-mcp")
    command, args = (str(script), ["serve"]) if script.exists() else (sys.executable, ["-m", "mam_mcp.cli", "serve"])
    env = {
        "HOME": str(tmp_path / "home"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_DATA_HOME": str(tmp_path / "xdg"),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "MAM_MCP_MODE": "local",
        "MAM_LOCAL_DATA_DIR": str(tmp_path / "mail"),
        "MAM_LOCAL_HTTP_PORT": "0",
        "MAM_LOCAL_SMTP_PORT": "0",
    }
    return StdioServerParameters(command=command, args=args, env=env)


async def test_a_stdio_server_notifies_a_subscriber_of_mail_sent_to_the_real_daemon(tmp_path: Path) -> None:
    from mcp.client.stdio import stdio_client

    send, updates = anyio.create_memory_object_stream[str](100)
    state_path = tmp_path / "mail" / "daemon.json"
    try:
        with (tmp_path / "stderr.log").open("w") as errlog, anyio.fail_after(90):
            transport = stdio_client(_serve_params(tmp_path), errlog=errlog)
            async with Client(transport, mode="legacy", message_handler=_updates_into(send)) as client:
                created = await client.call_tool("create_inbox", {"username": "live"})  # starts the daemon
                assert not created.is_error, created.content
                inbox = dict(created.structured_content or {})
                uri = inbox_messages_uri(inbox["id"])
                await client.subscribe_resource(uri)

                message = EmailMessage()
                message["From"] = "Acme <noreply@acme.example.com>"
                message["To"] = inbox["email"]
                message["Subject"] = "Your sign-in code"
                message.set_content("Your code is 482913.")
                smtp_port = json.loads(state_path.read_text(encoding="utf-8"))["smtpPort"]
                await aiosmtplib.send(message, hostname="127.0.0.1", port=smtp_port, timeout=10)
                with anyio.fail_after(WAIT):
                    assert await updates.receive() == uri

                text = (await client.read_resource(uri)).contents[0].text  # type: ignore[union-attr]
                fenced = text.split("<<<UNTRUSTED ", 1)[1]
                assert "Your sign-in code" in fenced and "482913" in fenced
                await client.unsubscribe_resource(uri)
    finally:
        if state_path.exists():
            kill_pid(int(json.loads(state_path.read_text(encoding="utf-8"))["pid"]))
