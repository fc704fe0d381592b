"""`mam-mcp local reset`: empties the local backend after a confirmation, against a real daemon
subprocess with mail delivered over real SMTP."""

from __future__ import annotations

import io
import subprocess
import sys
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import anyio

from mam_mcp.commands.local_reset import REFUSED_EXIT, reset
from mam_mcp.local.daemon.data_dir import DATA_FILES
from tests.local.daemon_process import REPO_ROOT, RunningDaemon, child_env, daemon_config, daemon_process


async def _cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in child_env().items() if not k.startswith(("MYAGENTMAIL_", "MAM_"))}
    env.update({"MAM_LOCAL_DATA_DIR": str(data_dir), "MAM_LOCAL_HTTP_PORT": "0", "MAM_LOCAL_SMTP_PORT": "0"})
    result = await anyio.run_process(
        [sys.executable, "-m", "mam_mcp.cli", *args], env=env, cwd=REPO_ROOT, check=False, stdin=subprocess.DEVNULL
    )
    return subprocess.CompletedProcess(result.args, result.returncode, result.stdout.decode(), result.stderr.decode())


async def _inbox_with_mail(daemon: RunningDaemon) -> dict[str, str]:
    async with daemon.client(timeout=10) as api:
        inbox: dict[str, str] = (await api.post("/v1/inboxes", json={"username": "keepme"})).json()
    message = EmailMessage()
    message["From"] = "noreply@acme.example.com"
    message["To"] = inbox["email"]
    message["Subject"] = "Your code"
    message.set_content("482913")
    await aiosmtplib.send(message, hostname="127.0.0.1", port=daemon.smtp_port, timeout=10)
    return inbox


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


async def test_reset_with_yes_stops_the_daemon_and_deletes_every_inbox_message_and_key(tmp_path: Path) -> None:
    config = daemon_config(tmp_path / "data")
    async with daemon_process(config) as daemon:
        await _inbox_with_mail(daemon)
        old_key = daemon.api_key
        result = await _cli(config.data_dir, "local", "reset", "--yes")
        assert result.returncode == 0, result.stderr
        assert f"Reset {config.data_dir}: every inbox, message, draft, webhook and key is deleted" in result.stdout
        assert old_key not in result.stdout + result.stderr
        assert await daemon.wait_exit() == 0  # stopped cleanly before its files went
    assert not any((config.data_dir / name).exists() for name in DATA_FILES)
    # The next daemon starts empty, with a new key.
    async with daemon_process(config) as fresh, fresh.client(timeout=10) as api:
        assert fresh.api_key != old_key
        assert (await api.get("/v1/inboxes")).json()["inboxes"] == []
    again = await _cli(config.data_dir, "local", "reset", "--yes")
    assert again.returncode == 0 and "Reset" in again.stdout  # the fresh daemon made a database


async def test_reset_without_a_terminal_and_without_yes_refuses_and_deletes_nothing(tmp_path: Path) -> None:
    config = daemon_config(tmp_path / "data")
    async with daemon_process(config) as daemon:
        inbox = await _inbox_with_mail(daemon)
        result = await _cli(config.data_dir, "local", "reset")
        assert result.returncode == REFUSED_EXIT
        assert "refusing to delete" in result.stderr and "--yes" in result.stderr
        assert daemon.process.returncode is None, "the daemon was left running"
        async with daemon.client(timeout=10) as api:
            messages = (await api.get(f"/v1/inboxes/{inbox['id']}/messages")).json()["messages"]
        assert [m["subject"] for m in messages] == ["Your code"]


async def test_reset_asks_and_only_yes_deletes(tmp_path: Path) -> None:
    config = daemon_config(tmp_path / "data")
    async with daemon_process(config) as daemon:
        await _inbox_with_mail(daemon)
        for answer in ("no\n", "y\n", "YES please\n", ""):
            out = io.StringIO()
            code = await anyio.to_thread.run_sync(
                lambda: reset(config, assume_yes=False, stdin=_Terminal(answer), out=out, err=io.StringIO())
            )
            assert code == REFUSED_EXIT, answer
            assert out.getvalue() == (
                f"This deletes every inbox and message in {config.data_dir}. Type yes to go on: Nothing deleted.\n"
            )
        assert daemon.process.returncode is None and config.db_path.exists()
        out = io.StringIO()
        code = await anyio.to_thread.run_sync(
            lambda: reset(config, assume_yes=False, stdin=_Terminal("yes\n"), out=out, err=io.StringIO())
        )
        assert code == 0, out.getvalue()
        assert "Type yes to go on: Reset " in out.getvalue()
        assert await daemon.wait_exit() == 0
    assert not config.db_path.exists() and not config.key_path.exists()


def test_reset_of_an_empty_data_dir_says_so_without_asking(tmp_path: Path) -> None:
    config = daemon_config(tmp_path / "never-used")
    out = io.StringIO()
    assert reset(config, assume_yes=False, stdin=io.StringIO(""), out=out, err=io.StringIO()) == 0
    assert out.getvalue() == f"Nothing to reset: {config.data_dir} holds no local mail.\n"
    assert not config.data_dir.exists()
