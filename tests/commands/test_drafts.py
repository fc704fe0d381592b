"""`mam-mcp drafts`: a person approves held mail at a terminal and exactly the shown message leaves.

In process against the real local backend for the approval logic; end to end against a real
daemon process for the command a person types (a pty answers the question, as a terminal would).
"""

from __future__ import annotations

import io
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx2
import pytest

from mam_mcp.client import MamClient
from mam_mcp.client.errors import PolicyDenied
from mam_mcp.commands.drafts import approve_draft, find_draft_inbox
from tests.conftest import make_settings
from tests.local.conftest import LocalBackendFixture, RecordingRelay, local_backend, local_config  # noqa: F401
from tests.local.daemon_process import REPO_ROOT, child_env, daemon_config, daemon_process

NEW = "new@example.org"
FIELDS = {"cc": [], "bcc": [], "subject": "Offer", "html_body": None, "reply_to_message_id": None}


@pytest.fixture
async def held(local_backend: LocalBackendFixture) -> dict[str, Any]:  # noqa: F811
    backend, app, key = local_backend
    relay = RecordingRelay()
    backend.relay = relay
    client = MamClient(base_url="http://l.test", api_key=key, transport=httpx2.ASGITransport(app=app))
    inbox = await client.inboxes.create(username="scout")
    await client.inboxes.create(username="other")
    draft = await backend.store.mail.create_draft(inbox.id, {**FIELDS, "to": [NEW], "plain_body": "Our offer: 10%"})
    yield {"client": client, "inbox": inbox.id, "draft": draft["id"], "relay": relay, "store": backend.store}
    await client.aclose()


def _answers(*replies: bool, before: Any = None) -> Any:
    asked: list[str] = []

    async def confirm(question: str) -> bool:
        asked.append(question)
        if before is not None:
            await before()
        return replies[len(asked) - 1]

    confirm.asked = asked  # type: ignore[attr-defined]
    return confirm


async def test_approve_shows_the_message_and_sends_it_on_yes(tmp_path: Path, held: dict[str, Any]) -> None:
    out = io.StringIO()
    settings = make_settings(tmp_path, hosted=False)
    code = await approve_draft(held["client"], settings, held["inbox"], held["draft"], confirm=_answers(True), out=out)
    shown = out.getvalue()
    assert code == 0 and f"Draft {held['draft']}, exactly as it would be sent:" in shown
    assert f"To: {NEW} (new)" in shown and "Subject: Offer" in shown and "Our offer: 10%" in shown
    assert "Sent draft" in shown and held["relay"].sent[0][1] == [NEW]
    assert await held["store"].mail.get_draft(held["inbox"], held["draft"]) is None


async def test_no_leaves_the_draft_and_sends_nothing(tmp_path: Path, held: dict[str, Any]) -> None:
    out = io.StringIO()
    settings = make_settings(tmp_path, hosted=False)
    code = await approve_draft(held["client"], settings, held["inbox"], held["draft"], confirm=_answers(False), out=out)
    assert code == 1 and "Not sent; the draft is unchanged." in out.getvalue()
    assert held["relay"].sent == [] and await held["store"].mail.get_draft(held["inbox"], held["draft"]) is not None


async def test_a_draft_edited_while_the_person_reads_it_is_not_sent(tmp_path: Path, held: dict[str, Any]) -> None:
    async def agent_edits() -> None:
        await held["store"].mail.update_draft(held["inbox"], held["draft"], {"plain_body": "Wire it to IBAN XX"})

    out = io.StringIO()
    settings = make_settings(tmp_path, hosted=False)
    confirm = _answers(True, before=agent_edits)
    code = await approve_draft(held["client"], settings, held["inbox"], held["draft"], confirm=confirm, out=out)
    assert code == 1 and "CONTENT_CHANGED" in out.getvalue() and "Our offer: 10%" in out.getvalue()
    assert held["relay"].sent == []


async def test_the_outbound_policy_applies_to_approvals_too(tmp_path: Path, held: dict[str, Any]) -> None:
    settings = make_settings(tmp_path, hosted=False, env={"MAM_OUTBOUND_BLOCK": "example.org"})
    with pytest.raises(PolicyDenied):
        await approve_draft(held["client"], settings, held["inbox"], held["draft"], confirm=_answers(True), out=io.StringIO())
    assert held["relay"].sent == []


async def test_the_draft_is_found_without_its_inbox(held: dict[str, Any]) -> None:
    assert await find_draft_inbox(held["client"], held["draft"]) == held["inbox"]
    assert await find_draft_inbox(held["client"], "01-no-such-draft") is None


def _read_until(fd: int, wanted: bytes, timeout: float) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while wanted not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    return seen


async def test_a_person_approves_at_a_terminal_and_a_script_cannot(tmp_path: Path) -> None:
    config = daemon_config(tmp_path / "data")
    async with daemon_process(config) as daemon:
        async with daemon.client() as api:
            inbox = (await api.post("/v1/inboxes", json={"username": "scout"})).json()
            draft = (await api.post(f"/v1/inboxes/{inbox['id']}/drafts", json={"to": [NEW], "subject": "Offer", "text": "hi"})).json()
        env = {
            **child_env(), "HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
            "MAM_LOCAL_DATA_DIR": str(config.data_dir), "MAM_LOCAL_HTTP_PORT": str(daemon.state["httpPort"]),
            "MAM_LOCAL_SMTP_PORT": str(daemon.smtp_port),
        }  # fmt: skip
        env.pop("MYAGENTMAIL_API_KEY", None)
        command = [sys.executable, "-m", "mam_mcp.cli", "drafts", "approve", draft["id"]]
        scripted = subprocess.run(command, env=env, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
        assert scripted.returncode == 1 and b"a person must answer this in a terminal" in scripted.stderr
        async with daemon.client() as api:
            assert (await api.get(f"/v1/inboxes/{inbox['id']}/drafts/{draft['id']}")).status_code == 200

        primary, secondary = pty.openpty()
        person = subprocess.Popen(command, env=env, cwd=REPO_ROOT, stdin=secondary, stdout=secondary, stderr=secondary)
        os.close(secondary)
        try:
            shown = _read_until(primary, b"Send it? [y/N]", timeout=30)
            assert f"To: {NEW} (new)".encode() in shown, shown
            os.write(primary, b"y\n")
            rest = _read_until(primary, b"captured locally", timeout=30)
            assert person.wait(timeout=30) == 0, rest
        finally:
            if person.poll() is None:
                person.kill()
            os.close(primary)
        assert b"Sent draft" in rest
        async with daemon.client() as api:
            outbound = (await api.get(f"/v1/inboxes/{inbox['id']}/messages", params={"direction": "outbound"})).json()
        assert [m["toAddresses"] for m in outbound["messages"]] == [[NEW]]
