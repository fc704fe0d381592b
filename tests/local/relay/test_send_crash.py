"""Sends survive a real crash: the daemon subprocess is SIGKILLed at named points of a send.

The test-only config `test_pause_at` makes the daemon stop at one point of a send, write
`paused-at-<point>` in its data dir and wait; the test kills it there (SIGKILL) and restarts it
on the same data dir, with a real aiosmtpd relay sink in this process. One data dir runs the
whole chain, each restart being the next step's start:

1. a send killed while `relaying` (before the relay saw it) -> `unknown`, never resent;
2. a send killed after the relay said 250, before `sent` was recorded -> `unknown`, not resent
   (the relay holds exactly one copy);
3. a draft send killed just before its message is recorded -> the draft is still there, no message;
4. a draft send killed just after -> the draft is gone and its message, recorded `queued` and
   never handed over, is sent once by the restarted daemon.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from tests.local.daemon_process import RunningDaemon, daemon_config, daemon_process
from tests.local.relay_sink import RelaySink, serve_sink

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")

KNOWN = "known@example.com"


async def _until_paused(data_dir: Path, point: str) -> None:
    """The daemon is another process: its pause shows only as the marker file it writes."""
    marker = data_dir / f"paused-at-{point}"
    with anyio.fail_after(15):
        while not marker.exists():  # bounded by fail_after
            await anyio.sleep(0.01)
    marker.unlink()


async def _kill_during(daemon: RunningDaemon, point: str, method: str, path: str, body: dict[str, Any]) -> None:
    """Make the request, and SIGKILL the daemon once it has paused at `point`."""

    async def request() -> None:
        with contextlib.suppress(httpx2.TransportError):  # the daemon dies under it
            async with daemon.client(timeout=30) as http:
                await http.request(method, path, json=body)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(request)
        await _until_paused(daemon.config.data_dir, point)
        daemon.process.kill()
        await daemon.wait_exit()


async def _outbound(daemon: RunningDaemon, inbox_id: str) -> dict[str, dict[str, Any]]:
    async with daemon.client() as http:
        listed = await http.get(f"/v1/inboxes/{inbox_id}/messages", params={"direction": "outbound", "limit": 100})
    assert listed.status_code == 200, listed.text
    return {m["subject"]: m for m in listed.json()["messages"]}


def _copies(sink: RelaySink, subject: str) -> int:
    return sum(f"Subject: {subject}\r\n".encode() in (e.original_content or b"") for e in sink.received)


async def test_a_send_killed_at_each_point_is_never_lost_and_never_resent(tmp_path: Path) -> None:
    async with serve_sink() as sink:
        data_dir = tmp_path / "data"

        def config(pause: str | None) -> Any:
            return daemon_config(data_dir, relay_url=sink.url, test_pause_at=pause)

        def send(subject: str) -> dict[str, Any]:
            return {"to": [KNOWN], "subject": subject, "text": "Body", "verified": True}

        # 1. killed while relaying, before the relay saw anything
        async with daemon_process(config("relaying")) as daemon:
            async with daemon.client() as http:
                inbox = (await http.post("/v1/inboxes", json={"username": "crash"})).json()
            base = f"/v1/inboxes/{inbox['id']}"
            await _kill_during(daemon, "relaying", "POST", f"{base}/send", send("one"))
        assert sink.data_attempts == 0

        # 2. killed after the relay said 250, before `sent` was recorded
        async with daemon_process(config("relayed")) as daemon:
            assert (await _outbound(daemon, inbox["id"]))["one"]["status"] == "unknown"
            await _kill_during(daemon, "relayed", "POST", f"{base}/send", send("two"))
        assert _copies(sink, "two") == 1

        # 3. a draft send killed just before its message is recorded
        async with daemon_process(config("recording")) as daemon:
            assert (await _outbound(daemon, inbox["id"]))["two"]["status"] == "unknown"
            async with daemon.client() as http:
                three = (await http.post(f"{base}/drafts", json={"to": [KNOWN], "subject": "three"})).json()
            await _kill_during(daemon, "recording", "POST", f"{base}/drafts/{three['id']}/send", {"verified": True})

        # 4. a draft send killed just after its message is recorded
        async with daemon_process(config("recorded")) as daemon:
            async with daemon.client() as http:
                assert (await http.get(f"{base}/drafts/{three['id']}")).status_code == 200, "the draft survives"
                four = (await http.post(f"{base}/drafts", json={"to": [KNOWN], "subject": "four"})).json()
            assert "three" not in await _outbound(daemon, inbox["id"])
            await _kill_during(daemon, "recorded", "POST", f"{base}/drafts/{four['id']}/send", {"verified": True})
        assert _copies(sink, "four") == 0

        async with daemon_process(config(None)) as daemon:
            with anyio.fail_after(15):
                await sink.wait_for(received=2)  # "two" before the crash, "four" from the restarted daemon
            async with daemon.client() as http:
                assert (await http.get(f"{base}/drafts/{four['id']}")).status_code == 404
            with anyio.fail_after(15):
                while (await _outbound(daemon, inbox["id"]))["four"]["status"] != "sent":  # bounded by fail_after
                    await anyio.sleep(0.02)
            after = await _outbound(daemon, inbox["id"])
            async with daemon.client() as http:  # a later send goes through the same relay, alone
                five = await http.post(f"{base}/send", json=send("five"))
            assert five.status_code == 201 and five.json()["status"] == "sent"
        # A send the daemon finds recorded is delivered once; one it finds with the relay is never resent.
        assert {s: m["status"] for s, m in after.items()} == {"one": "unknown", "two": "unknown", "four": "sent"}
        assert [_copies(sink, s) for s in ("one", "two", "three", "four", "five")] == [0, 1, 0, 1, 1]
