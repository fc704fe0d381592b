"""File modes: the data dir is 0700 and every file the backend creates in it 0600, even in a dir that existed 0755."""

from __future__ import annotations

import logging
import os
import stat
import sys
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import anyio
import pytest

from mam_mcp.local.config import LocalConfig
from mam_mcp.local.daemon.data_dir import open_private, prepare_data_dir, write_state_file
from mam_mcp.local.store.email_store import EmailStore
from tests.local.daemon_process import daemon_config, daemon_process

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """The usual 022 umask, so files created without care would be 0644."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def test_an_existing_open_data_dir_and_its_files_are_tightened_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    os.chmod(data_dir, 0o755)
    (data_dir / "mail.db").write_bytes(b"")
    os.chmod(data_dir / "mail.db", 0o644)
    (data_dir / "key").write_text("tk_secret")
    os.chmod(data_dir / "key", 0o640)
    (data_dir / "sub").mkdir()
    caplog.set_level(logging.WARNING)
    prepare_data_dir(LocalConfig(data_dir=data_dir))
    assert _mode(data_dir) == 0o700
    assert _mode(data_dir / "mail.db") == _mode(data_dir / "key") == 0o600
    warnings = "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
    assert "mode 755" in warnings and "tightened to 700" in warnings
    assert "key (640)" in warnings and "mail.db (644)" in warnings
    assert "tk_secret" not in warnings


def test_a_private_data_dir_is_left_quiet(tmp_path: Path, caplog: pytest.LogCaptureFixture, loose_umask: None) -> None:
    caplog.set_level(logging.WARNING)
    config = LocalConfig(data_dir=tmp_path / "new" / "data")
    prepare_data_dir(config)  # created here, under a 022 umask
    write_state_file(config)
    assert _mode(config.data_dir) == 0o700 and _mode(config.state_path) == 0o600
    prepare_data_dir(config)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_open_private_creates_0600_and_tightens_an_existing_file(tmp_path: Path, loose_umask: None) -> None:
    log = tmp_path / "daemon.log"
    os.close(open_private(log, os.O_WRONLY | os.O_APPEND))
    assert _mode(log) == 0o600
    os.chmod(log, 0o644)
    os.close(open_private(log, os.O_WRONLY | os.O_APPEND))
    assert _mode(log) == 0o600


async def test_the_database_its_wal_and_shm_are_0600_in_a_dir_that_existed(tmp_path: Path, loose_umask: None) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o755)
    config = LocalConfig(data_dir=data_dir)
    async with EmailStore(config) as store:
        await store.db.write(lambda c: c.execute("INSERT INTO tenants VALUES ('t', 'now')"))
        files = [config.db_path, *(config.db_path.with_name(config.db_path.name + s) for s in ("-wal", "-shm"))]
        assert all(f.exists() for f in files)
        assert {f.name: _mode(f) for f in files} == {f.name: 0o600 for f in files}


async def test_every_file_of_a_running_daemon_is_0600_in_a_0700_dir(tmp_path: Path, loose_umask: None) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o755)
    os.chmod(data_dir, 0o755)
    config = daemon_config(data_dir)
    async with daemon_process(config) as daemon:
        async with daemon.client() as http:
            inbox = (await http.post("/v1/inboxes", json={"username": "modes"})).json()
            hook = await http.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/x", "events": []})
            assert hook.status_code == 201
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = "a@app.example", inbox["email"], "hello"
        message.set_content("a body")
        with anyio.fail_after(15):
            await aiosmtplib.send(message, hostname="127.0.0.1", port=daemon.smtp_port)
        assert _mode(data_dir) == 0o700
        files = sorted(p for p in data_dir.iterdir() if p.is_file())
        names = {p.name for p in files}
        assert {"mail.db", "mail.db-wal", "mail.db-shm", "daemon.json"} <= names, names
        assert {p.name: _mode(p) for p in files} == {p.name: 0o600 for p in files}
    assert "tightened to 700" in daemon.log()
