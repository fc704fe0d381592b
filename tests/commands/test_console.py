"""`mam-mcp console`: starts the daemon if needed and hands the person a one-time sign-in link,
opened in the browser or printed with --no-browser. A real daemon on free loopback ports."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def console_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    data_dir = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MYAGENTMAIL_", "MAM_"))}
    env.update({
        "HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "MAM_LOCAL_DATA_DIR": str(data_dir), "MAM_MCP_MODE": "local",
        "MAM_LOCAL_HTTP_PORT": str(_free_port()), "MAM_LOCAL_SMTP_PORT": str(_free_port()),
        "BROWSER": "",
    })  # fmt: skip
    try:
        yield env
    finally:
        state = data_dir / "daemon.json"
        if state.exists():
            try:
                os.kill(json.loads(state.read_text())["pid"], signal.SIGTERM)
            except ProcessLookupError:
                pass


def _console(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mam_mcp.cli", "console", *args],
        check=False, env=env, capture_output=True, text=True, timeout=60,
    )


def test_no_browser_prints_a_link_that_signs_in_once(console_env: dict[str, str]) -> None:
    port = console_env["MAM_LOCAL_HTTP_PORT"]
    done = _console(console_env, "--no-browser")
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"Console: http://127.0.0.1:{port}/console/" in done.stdout
    link = re.search(rf"http://127\.0\.0\.1:{port}/console/login\?token=\S+", done.stdout)
    assert link is not None, done.stdout
    key = (Path(console_env["MAM_LOCAL_DATA_DIR"]) / "api_key").read_text().strip()
    assert key not in done.stdout + done.stderr  # the tenant key stays in the data dir

    with httpx2.Client() as browser:
        landed = browser.get(link.group(0))
        key_in_page = re.search(r'<meta name=mam-page-key content="([A-Za-z0-9_-]+)">', landed.text)
        assert landed.status_code == 200 and key_in_page is not None
        page_key = key_in_page.group(1)
        page = browser.get(f"http://127.0.0.1:{port}/console/")
        assert page.status_code == 200 and 'name="mam-base"' in page.text and page_key not in page.text
        listed = browser.get(f"http://127.0.0.1:{port}/console/api/inboxes", headers={"X-Console-Key": page_key})
        assert listed.status_code == 200
    with httpx2.Client() as other:
        assert other.get(link.group(0)).status_code == 403  # the link worked once

    again = _console(console_env, "--no-browser")  # the daemon is running now: a new link, same console
    assert again.returncode == 0 and link.group(0) not in again.stdout


def test_without_a_browser_it_says_so_and_prints_the_link(console_env: dict[str, str]) -> None:
    # BROWSER="" and no display: Python's webbrowser finds nothing to open here.
    console_env.pop("DISPLAY", None)
    console_env.pop("WAYLAND_DISPLAY", None)
    console_env["PATH"] = str(Path(sys.executable).parent)  # no xdg-open, www-browser, chromium...
    done = _console(console_env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "No browser could be opened here." in done.stdout
    assert "/console/login?token=" in done.stdout
