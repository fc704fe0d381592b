"""`mam-mcp tail` (events as JSON lines) and `mam-mcp listen --forward URL` (events as signed webhooks)."""

from __future__ import annotations

import argparse
import hashlib
import hmac
import io
import json
import os
import stat
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import Process
from anyio.streams.text import TextReceiveStream

from mam_mcp.commands import listen as listen_command
from mam_mcp.commands.listen import forward_events, forwarding_secret
from mam_mcp.loopback import is_loopback_url
from mam_mcp.commands.tail import tail_events
from tests.conftest import make_settings
from tests.event_stack import local_stack, verification_mail
from tests.fakes.hosted_api import FakeHostedAPI
from tests.local.conftest import local_backend, local_config  # noqa: F401  (fixtures)
from tests.local.webhook_receiver import serve_receiver

WEBHOOK_KEYS = {
    "event",
    "messageId",
    "inboxId",
    "threadId",
    "from",
    "to",
    "subject",
    "hasAttachments",
    "timestamp",
}


def reference_verify(raw_body: bytes, signature: str, secret: str) -> bool:
    """The reference's Python verifier, verbatim in substance (webhooks.md)."""
    expected = hmac.new(secret.encode(), raw_body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(signature, expected)


def mail_with_attachment(to: str) -> bytes:
    message = EmailMessage()
    message["From"] = "Billing <billing@acme.example.com>"
    message["To"] = to
    message["Subject"] = "Your invoice"
    message.set_content("Invoice attached.")
    message.add_attachment(b"%PDF-1.4 fake", maintype="application", subtype="pdf", filename="invoice.pdf")
    return message.as_bytes()


class Lines:
    """Line reader over a subprocess stream, bounded by the caller's fail_after."""

    def __init__(self, stream: Any) -> None:
        self._chunks = TextReceiveStream(stream)
        self._buffer = ""
        self.seen: list[str] = []

    async def next_line(self) -> str:
        while "\n" not in self._buffer:
            self._buffer += await self._chunks.receive()
        line, self._buffer = self._buffer.split("\n", 1)
        self.seen.append(line)
        return line

    async def line_containing(self, text: str, limit: int = 50) -> str:
        for _ in range(limit):
            line = await self.next_line()
            if text in line:
                return line
        raise AssertionError(f"no line with {text!r} in {self.seen}")


@asynccontextmanager
async def mam_mcp_process(tmp_path: Path, base_url: str, key: str, *args: str) -> AsyncIterator[Process]:
    env = {
        **os.environ,
        "HOME": str(tmp_path / "home"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "MYAGENTMAIL_API_KEY": key,
        "MYAGENTMAIL_BASE_URL": base_url,
        "PYTHONUNBUFFERED": "0",  # stdout is a pipe: tail must flush each line itself
    }
    process = await anyio.open_process([sys.executable, "-m", "mam_mcp.cli", *args], env=env)
    try:
        yield process
    finally:
        process.terminate()
        with anyio.fail_after(10):
            await process.wait()


async def test_tail_prints_each_event_as_one_json_line_as_it_happens(tmp_path: Path) -> None:
    fake = FakeHostedAPI()
    inbox = fake.seed_inbox("scout")
    async with (
        fake.serving() as base_url,
        mam_mcp_process(
            tmp_path, base_url, fake.api_key, "tail", "--inbox", inbox["id"], "--event", "message.received"
        ) as process,
    ):
        assert process.stdout is not None and process.stderr is not None
        status, out = Lines(process.stderr), Lines(process.stdout)
        with anyio.fail_after(30):
            assert "via websocket" in await status.line_containing("listening for message.received")
            stored = fake.deliver_inbound(
                inbox["id"],
                from_address="noreply@acme.example.com",
                subject="Your code is 483921",
                plain_body="Your code: 483921",
            )
            frame = json.loads(await out.next_line())
    assert frame["type"] == "event" and frame["event_type"] == "message.received"
    assert frame["event_id"].startswith("evt_")
    assert (
        frame["message"]["message_id"] == stored["id"]
        and frame["message"]["plain_body"] == "Your code: 483921"
    )
    assert fake.api_key not in "\n".join(status.seen)
    assert not fake.violations


async def test_tail_events_writes_frames_for_mail_received_over_smtp(local_backend: Any) -> None:  # noqa: F811
    out, status = io.StringIO(), io.StringIO()
    async with local_stack(local_backend) as stack:
        inbox = await stack.create_inbox("scout")
        async with stack.client() as client:
            ready = anyio.Event()
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(
                    lambda: tail_events(
                        client,
                        inbox_ids=[inbox["id"]],
                        local_filters=True,
                        out=out,
                        status=status,
                        max_events=1,
                        ready=ready,
                    )
                )
                with anyio.fail_after(10):
                    await ready.wait()
                    await stack.send_smtp(
                        inbox["email"], verification_mail("noreply@acme.example.com", inbox["email"])
                    )
    [line] = out.getvalue().splitlines()
    frame = json.loads(line)
    assert frame["message"]["subject"] == "Confirm your Acme account"
    assert frame["message"]["inbox_id"] == inbox["id"]
    assert "via websocket" in status.getvalue()


async def test_listen_posts_signed_webhook_payloads_to_a_real_receiver(
    tmp_path: Path,
    local_backend: Any,  # noqa: F811
) -> None:
    secret, _ = forwarding_secret(make_settings(tmp_path, hosted=False), status=io.StringIO())
    status = io.StringIO()
    async with local_stack(local_backend) as stack, serve_receiver() as receiver:
        inbox = await stack.create_inbox("scout")
        async with stack.client() as client:
            ready = anyio.Event()
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(
                    lambda: forward_events(
                        client,
                        url=receiver.url,
                        secret=secret,
                        inbox_ids=[inbox["id"]],
                        local_filters=True,
                        status=status,
                        max_events=2,
                        ready=ready,
                    )
                )
                with anyio.fail_after(10):
                    await ready.wait()
                    await stack.send_smtp(
                        inbox["email"], verification_mail("noreply@acme.example.com", inbox["email"])
                    )
                    await stack.send_smtp(inbox["email"], mail_with_attachment(inbox["email"]))
                    await receiver.wait_for(2)
    first, second = receiver.requests
    for posted in (first, second):
        assert reference_verify(posted.body, posted.headers["x-mam-signature"], secret)
        assert not reference_verify(posted.body + b" ", posted.headers["x-mam-signature"], secret)
        payload = json.loads(posted.body)
        assert set(payload) == WEBHOOK_KEYS, "the webhook shape of the reference, not the WebSocket frame"
        assert (payload["event"], payload["inboxId"], payload["to"]) == (
            "message.received",
            inbox["id"],
            inbox["email"],
        )
    assert json.loads(first.body)["subject"] == "Confirm your Acme account"
    assert json.loads(first.body)["hasAttachments"] is False
    assert json.loads(second.body)["hasAttachments"] is True
    assert status.getvalue().count("-> HTTP 200") == 2
    assert secret not in status.getvalue()


async def test_listen_forwards_to_a_loopback_url_directly_even_with_a_proxy_in_the_environment(
    tmp_path: Path,
    local_backend: Any,  # noqa: F811
    monkeypatch: Any,
) -> None:
    # A corporate HTTP_PROXY cannot reach this machine's 127.0.0.1 (port 9: nothing listens there).
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    status = io.StringIO()
    async with local_stack(local_backend) as stack, serve_receiver() as receiver:
        inbox = await stack.create_inbox("scout")
        async with stack.client() as client:
            ready = anyio.Event()
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(
                    lambda: forward_events(
                        client,
                        url=receiver.url,
                        secret="whsec_test",
                        inbox_ids=[inbox["id"]],
                        local_filters=True,
                        status=status,
                        max_events=1,
                        ready=ready,
                    )
                )
                with anyio.fail_after(10):
                    await ready.wait()
                    await stack.send_smtp(
                        inbox["email"], verification_mail("noreply@acme.example.com", inbox["email"])
                    )
                    await receiver.wait_for(1)
    assert "-> HTTP 200" in status.getvalue()
    assert is_loopback_url("http://localhost:3000/hooks") and is_loopback_url("http://[::1]:3000/")
    assert not is_loopback_url("https://hooks.example.com/mam")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_signing_secret_goes_to_a_0600_file_only_a_terminal_sees_it_and_later_runs_reuse_it(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path, hosted=False)
    terminal = _Terminal()
    secret, path = forwarding_secret(settings, status=terminal)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == secret and len(secret) > 40
    assert terminal.getvalue().count(secret) == 1 and str(path) in terminal.getvalue()

    for status in (io.StringIO(), _Terminal()):  # every later run: the same file, no new one, not shown again
        again, again_path = forwarding_secret(settings, status=status)
        assert (again, again_path) == (secret, path)
        assert str(path) in status.getvalue() and secret not in status.getvalue()
    assert [p.name for p in settings.secrets_dir.iterdir()] == [path.name]

    path.unlink()  # deleting the file asks for a new secret; a pipe never sees it
    piped = io.StringIO()
    fresh, _ = forwarding_secret(settings, status=piped)
    assert fresh != secret and fresh not in piped.getvalue() and "not shown" in piped.getvalue()


def test_listen_refuses_a_forward_target_that_is_not_http(tmp_path: Path) -> None:
    args = argparse.Namespace(forward="file:///etc/passwd", inbox_ids=None, event_types=None)
    assert listen_command.run(args, make_settings(tmp_path, hosted=False)) == 2
    assert not (make_settings(tmp_path, hosted=False).secrets_dir).exists()


async def test_listen_command_end_to_end_against_the_hosted_api(tmp_path: Path) -> None:
    fake = FakeHostedAPI()
    inbox = fake.seed_inbox("scout")
    async with (
        fake.serving() as base_url,
        serve_receiver() as receiver,
        mam_mcp_process(
            tmp_path, base_url, fake.api_key, "listen", "--forward", receiver.url, "--inbox", inbox["id"]
        ) as process,
    ):
        status = Lines(process.stderr)
        with anyio.fail_after(30):
            saved = await status.line_containing("signing secret saved to ")
            await status.line_containing("forwarding ")
            fake.deliver_inbound(
                inbox["id"],
                from_address="noreply@acme.example.com",
                subject="Code 483921",
                plain_body="Your code: 483921",
            )
            await receiver.wait_for(1)
    secret_file = Path(saved.split("signing secret saved to ", 1)[1].split(" (mode", 1)[0])
    secret = secret_file.read_text().strip()
    [posted] = receiver.requests
    assert reference_verify(posted.body, posted.headers["x-mam-signature"], secret)
    assert json.loads(posted.body)["subject"] == "Code 483921"
    assert secret not in "\n".join(status.seen)
    assert not fake.violations
