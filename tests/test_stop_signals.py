"""`mam-mcp serve` stops promptly and cleanly on Ctrl-C and SIGTERM: in a terminal, under a host, over HTTP.

Real subprocesses; the terminal case runs on a real pseudo-terminal (python's `pty`), so Ctrl-C
goes through the terminal's line discipline exactly as a person's keystroke does.
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx2
import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and pseudo-terminals")

WAIT_SECONDS = 20.0  # an upper bound for a wait, never an assertion on speed


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MYAGENTMAIL_", "MAM_"))}
    env.update({
        "HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "MAM_LOCAL_DATA_DIR": str(tmp_path / "data"), "MAM_LOCAL_HTTP_PORT": "1", "MAM_LOCAL_SMTP_PORT": "1",
    })
    return env


def _read_until(fd: int, needle: bytes, deadline: float) -> bytes:
    seen = b""
    while needle not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    return seen


def _wait_exit(pid: int, deadline: float) -> int | None:
    """The exit code (negative: killed by that signal), or None if still running at the deadline."""
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    return None


def test_serve_in_a_terminal_says_what_it_waits_for_and_quits_on_ctrl_c(tmp_path: Path) -> None:
    err_read, err_write = os.pipe()
    env = _env(tmp_path)
    pid, master = os.forkpty()
    if pid == 0:  # the child: the pseudo-terminal is its stdin/stdout and controlling terminal
        os.dup2(err_write, 2)  # stderr to a pipe, to check the hint goes there (not to the protocol's stdout)
        os.execve(sys.executable, [sys.executable, "-m", "mam_mcp.cli", "serve"], env)
    os.close(err_write)
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        stderr = _read_until(err_read, b"Ctrl-C quits", deadline).decode()
        hint = [line for line in stderr.splitlines() if "waiting for an MCP host" in line]
        assert len(hint) == 1, stderr
        for advice in ("stdin", "`mam-mcp install`", "`mam-mcp demo`", "Ctrl-C quits"):
            assert advice in hint[0]
        assert "linkedin" not in stderr.lower()  # no warning about toolsets nobody asked for

        os.write(master, b"\x03")  # Ctrl-C, typed
        code = _wait_exit(pid, time.monotonic() + WAIT_SECONDS)
        if code is None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        assert code == 130, f"serve did not end on Ctrl-C (exit {code})"
        rest = _read_until(err_read, b"\0never", time.monotonic() + 2).decode()
        assert "Traceback" not in stderr + rest
    finally:
        os.close(err_read)
        os.close(master)


def test_serve_under_a_host_ends_on_sigterm_while_stdin_stays_open(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "mam_mcp.cli", "serve"], env=_env(tmp_path),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        # One request answered proves it is serving (and reading stdin) before the signal.
        process.stdin.write(b'{"jsonrpc":"2.0","id":1,"method":"ping"}\n')
        process.stdin.flush()
        assert b'"id":1' in process.stdout.readline()
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=WAIT_SECONDS)
        assert code == 128 + signal.SIGTERM
        stderr = process.stderr.read().decode() if process.stderr else ""
        assert "Traceback" not in stderr and "waiting for an MCP host" not in stderr  # not a terminal: no hint
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize(("transport", "stop"), [("http", signal.SIGINT), ("sse", signal.SIGTERM)])
def test_http_serve_stops_on_a_signal_with_a_stream_open(tmp_path: Path, transport: str, stop: int) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "mam_mcp.cli", "serve", "--transport", transport, "--port", "0"],
        env=_env(tmp_path), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    assert process.stderr is not None
    try:
        announced = ""
        while "serving" not in announced:
            line = process.stderr.readline()
            assert line, "the server ended before it announced its address"
            announced += line
        url = re.search(r"(http://\S+)", announced)
        assert url is not None, announced
        stream_end: list[str] = []
        opened = threading.Event()

        def hold_a_stream_open() -> None:
            headers = {"accept": "text/event-stream"}
            try:
                with httpx2.Client(timeout=WAIT_SECONDS) as http:
                    target = url.group(1)
                    if transport == "http":  # a session's standalone GET stream
                        init = http.post(target, headers={"accept": "application/json, text/event-stream"}, json={
                            "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                                "protocolVersion": "2025-06-18", "capabilities": {},
                                "clientInfo": {"name": "test", "version": "1"}}})
                        headers["mcp-session-id"] = init.headers["mcp-session-id"]
                    with http.stream("GET", target, headers=headers) as response:
                        opened.set()
                        for _ in response.iter_lines():
                            pass
                stream_end.append("ended")
            except httpx2.HTTPError as error:
                stream_end.append(type(error).__name__)
            finally:
                opened.set()

        reader = threading.Thread(target=hold_a_stream_open, daemon=True)
        reader.start()
        assert opened.wait(WAIT_SECONDS)
        process.send_signal(stop)
        code = process.wait(timeout=WAIT_SECONDS)
        reader.join(WAIT_SECONDS)
        assert code in (130, -signal.SIGTERM), code  # uvicorn re-raises SIGTERM once it has shut down
        assert stream_end == ["ended"]  # the client saw the stream end properly, not a torn connection
        log = process.stderr.read()
        assert "Traceback" not in log and "ERROR" not in log, log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
