"""`mam-mcp demo` end to end: a real daemon, a real stdio server, real SMTP — on isolated ports and data dir."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_demo_round_trip_prints_each_step(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MYAGENTMAIL_", "MAM_"))}
    env.update({
        "HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "MAM_LOCAL_DATA_DIR": str(data_dir),
        "MAM_LOCAL_HTTP_PORT": str(_free_port()), "MAM_LOCAL_SMTP_PORT": str(_free_port()),
    })
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "mam_mcp.cli", "demo", "--json", "--timeout", "20"],
            env=env, capture_output=True, text=True, timeout=120,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        steps = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
        titles = [s["title"] for s in steps]
        assert titles[0].startswith("Local mail backend started")
        assert "create_inbox" in titles and "get_message" in titles and "reply_to_email (in-thread)" in titles
        inbox = next(s["data"] for s in steps if s["title"] == "create_inbox")
        message = next(s["data"] for s in steps if s["title"] == "get_message")
        assert message["to"] == [inbox["email"]]
        assert message["subject"] == "Confirm your email for Demo Service"
        assert "Your verification code is" in message["body"]["text"]
        reply = next(s["data"] for s in steps if s["title"] == "reply_to_email (in-thread)")
        assert reply["thread_id"] == message["thread_id"]
        assert reply["status"] == "captured" and reply["sent"] is False
    finally:
        state = data_dir / "daemon.json"
        if state.exists():
            try:
                os.kill(json.loads(state.read_text())["pid"], signal.SIGTERM)
            except ProcessLookupError:
                pass
