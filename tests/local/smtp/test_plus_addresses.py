"""Plus-address routing and the catch-all inbox, through real SMTP into a real daemon subprocess.

`scout+run42@<domain>` lands in `scout`'s inbox tagged `run42`; lists filter by `tag` and `to`;
unknown names on the local domain are refused unless a catch-all inbox is configured, and
other domains are refused either way.
"""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib
import anyio
import pytest

from mam_mcp.local.store.directory import Delivery, InboxDirectory, InboxRecord
from tests.local.daemon_process import RunningDaemon, daemon_config, daemon_process
from tests.local.webhook_receiver import serve_receiver

STEP_TIMEOUT = 30.0


def _mail(to: str, subject: str) -> bytes:
    message = EmailMessage()
    message["From"] = "CI <ci@app.example.com>"
    message["To"] = to
    message["Subject"] = subject
    message.set_content(f"{subject}\n")
    return message.as_bytes()


async def _smtp(daemon: RunningDaemon, to: str, subject: str) -> None:
    await aiosmtplib.send(
        _mail(to, subject), sender="ci@app.example.com", recipients=[to],
        hostname="127.0.0.1", port=daemon.smtp_port, start_tls=False,
    )  # fmt: skip


async def _messages(daemon: RunningDaemon, inbox_id: str, **params: str) -> list[dict[str, Any]]:
    async with daemon.client() as http:
        response = await http.get(f"/v1/inboxes/{inbox_id}/messages", params=params)
        assert response.status_code == 200, response.text
        messages: list[dict[str, Any]] = response.json()["messages"]
        return messages


async def test_plus_addresses_deliver_to_the_base_inbox_tagged_and_lists_filter_by_tag(tmp_path: Path) -> None:
    config = daemon_config(tmp_path / "data")
    with anyio.fail_after(STEP_TIMEOUT):
        async with daemon_process(config) as daemon:
            async with daemon.client() as http:
                scout = (await http.post("/v1/inboxes", json={"username": "scout"})).json()
            domain = config.domain
            await _smtp(daemon, f"scout+run42@{domain}", "job 42")
            await _smtp(daemon, f"Scout+Run43@{domain.upper()}", "job 43")
            await _smtp(daemon, f"scout@{domain}", "untagged")

            every = await _messages(daemon, scout["id"])
            assert sorted((m["subject"], m["tag"]) for m in every) == [
                ("job 42", "run42"), ("job 43", "Run43"), ("untagged", None),
            ]  # fmt: skip
            assert [m["subject"] for m in await _messages(daemon, scout["id"], tag="run42")] == ["job 42"]
            assert [m["subject"] for m in await _messages(daemon, scout["id"], tag="RUN43")] == ["job 43"]
            assert await _messages(daemon, scout["id"], tag="run44") == []
            by_to = await _messages(daemon, scout["id"], to=f"scout+run42@{domain}")
            assert [m["subject"] for m in by_to] == ["job 42"]
            assert [m["subject"] for m in await _messages(daemon, scout["id"], to=f"scout@{domain}")] == ["untagged"]

            # Without a catch-all, unknown names on the local domain are refused, as before.
            with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
                await _smtp(daemon, f"nobody@{domain}", "lost")
            assert refused.value.recipients[0].code == 550
            with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
                await _smtp(daemon, f"nobody+x@{domain}", "lost")


async def test_a_webhook_says_which_plus_tag_a_mail_came_with(tmp_path: Path) -> None:
    import json

    config = daemon_config(tmp_path / "data")
    with anyio.fail_after(STEP_TIMEOUT):
        async with serve_receiver() as receiver, daemon_process(config) as daemon:
            async with daemon.client() as http:
                scout = (await http.post("/v1/inboxes", json={"username": "scout"})).json()
                hook = await http.post("/v1/webhooks", json={"url": receiver.url, "events": ["message.received"]})
                assert hook.status_code == 201, hook.text
            await _smtp(daemon, f"scout+run42@{config.domain}", "job 42")
            await _smtp(daemon, f"scout@{config.domain}", "untagged")
            await receiver.wait_for(2)
            payloads = {json.loads(r.body)["subject"]: json.loads(r.body) for r in receiver.requests}
            assert payloads["job 42"]["tag"] == "run42"
            assert "tag" not in payloads["untagged"]  # untagged mail: the reference's payload, unchanged
            assert payloads["job 42"]["inboxId"] == scout["id"]


async def test_a_catch_all_inbox_takes_unknown_local_names_and_other_domains_stay_refused(tmp_path: Path) -> None:
    config = daemon_config(tmp_path / "data", catch_all_inbox="catchall")
    with anyio.fail_after(STEP_TIMEOUT):
        async with daemon_process(config) as daemon:
            domain = config.domain
            # Configured but not created yet: unknown names are still refused (never stored nowhere).
            with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
                await _smtp(daemon, f"early@{domain}", "too early")
            async with daemon.client() as http:
                catchall = (await http.post("/v1/inboxes", json={"username": "catchall"})).json()
                scout = (await http.post("/v1/inboxes", json={"username": "scout"})).json()
            await _smtp(daemon, f"anyone@{domain}", "to anyone")
            await _smtp(daemon, f"qa+pr7@{domain}", "to qa plus tag")
            await _smtp(daemon, f"scout+run1@{domain}", "to scout")  # a known name still wins

            caught = await _messages(daemon, catchall["id"])
            assert sorted((m["subject"], m["tag"], m["toAddresses"]) for m in caught) == [
                ("to anyone", None, [f"anyone@{domain}"]),
                ("to qa plus tag", "pr7", [f"qa+pr7@{domain}"]),
            ]
            assert [(m["subject"], m["tag"]) for m in await _messages(daemon, scout["id"])] == [("to scout", "run1")]
            with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
                await _smtp(daemon, "someone@elsewhere.example", "not ours")
            assert refused.value.recipients[0].code == 550


def test_an_exact_address_wins_over_plus_routing_and_long_tags_are_cut() -> None:
    directory = InboxDirectory(domain="mam.localhost")
    plain = InboxRecord("inb-1", "ten", None, "scout@mam.localhost")
    plussed = InboxRecord("inb-2", "ten", None, "scout+vip@mam.localhost")
    directory.add_inbox(plain)
    directory.add_inbox(plussed)
    assert directory.route("<SCOUT+VIP@mam.localhost>") == Delivery(plussed, None)
    routed = directory.route(f"scout+{'t' * 100}@mam.localhost")
    assert routed is not None and routed.inbox == plain and routed.tag == "t" * 64
    assert directory.route("scout+@mam.localhost") == Delivery(plain, None)
    assert directory.route("nobody@mam.localhost") is None  # no catch-all configured
