"""Every `mam-mcp` subcommand answers bad input and a closed stdout with a sentence, never a traceback.

Real subprocesses. "Closed stdout" is a pipe whose reading end is already closed, which is
what `mam-mcp demo --json | head -1` becomes once `head` has its line.
"""

from __future__ import annotations

import contextlib
import json
import os
import smtplib
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anyio
import pytest

from mam_mcp.cli import COMMANDS

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="closed-pipe semantics are POSIX")

WAIT_SECONDS = 60.0
NO_TRACEBACK = ("Traceback", "TaskGroup", "Exception ignored", "sub-exception")

# One bad value per subcommand (the table must name every command: a new one needs its case).
BAD_INPUT: dict[str, tuple[list[str], str]] = {
    "serve": (["serve", "--toolsets", "bogus"], "unknown toolset(s): 'bogus'"),
    "tools": (["tools", "--toolsets", "bogus"], "unknown toolset(s): 'bogus'"),
    "local": (["local", "--relay-url", "bogus://relay", "--http-port", "0", "--smtp-port", "0"],
              "relay URL scheme must be one of"),
    "demo": (["demo", "--timeout", "0"], "argument --timeout: must be a whole number from 1 to 600"),
    "install": (["install", "--host", "windsurf", "--scope", "project"], "windsurf: has no project-scope config"),
    "login": (["login", "--api-key", "not a key"], "does not look like an API key"),
    "logout": (["logout", "--everything"], "unrecognized arguments: --everything"),
    "doctor": (["doctor", "--json", "--verbose"], "unrecognized arguments: --verbose"),
    "install-skill": (["install-skill", "--dir", "/proc/no/such/dir"], "No such file or directory"),
    "linkedin": (["linkedin", "connect", "--label", "x"], "LinkedIn needs the hosted MyAgentMail API"),
    "drafts": (["drafts", "approve"], "the following arguments are required: DRAFT_ID"),
    "console": (["console", "--no-browser", "--port", "1"], "unrecognized arguments: --port 1"),
    "tail": (["tail", "--event", "message.opened"], "invalid choice: 'message.opened'"),
    "listen": (["listen", "--forward", "ftp://example.com"], "--forward must be an http:// or https:// URL"),
}


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MYAGENTMAIL_", "MAM_"))}
    env.update({
        "HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "MAM_LOCAL_DATA_DIR": str(tmp_path / "data"), "MAM_LOCAL_HTTP_PORT": "0", "MAM_LOCAL_SMTP_PORT": "0",
    })
    env.update(extra)
    return env


@contextlib.contextmanager
def _closed_pipe() -> Iterator[int]:
    """The writing end of a pipe nobody reads any more."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        yield write_end
    finally:
        os.close(write_end)


def _run(tmp_path: Path, args: list[str], *, stdout_closed: bool, **kwargs: object) -> tuple[int, str, str]:
    command = [sys.executable, "-m", "mam_mcp.cli", *args]
    (tmp_path / "home").mkdir(exist_ok=True)
    if stdout_closed:
        with _closed_pipe() as stdout:
            done = subprocess.run(command, env=_env(tmp_path), cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=stdout,
                                  stderr=subprocess.PIPE, text=True, timeout=WAIT_SECONDS, **kwargs)  # type: ignore[call-overload]
        return done.returncode, "", done.stderr
    done = subprocess.run(command, env=_env(tmp_path), cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=WAIT_SECONDS, **kwargs)  # type: ignore[call-overload]
    return done.returncode, done.stdout, done.stderr


def test_the_bad_input_table_covers_every_subcommand() -> None:
    assert set(BAD_INPUT) == set(COMMANDS)


def _run_all(tmp_path: Path, cases: dict[str, list[str]], *, stdout_closed: bool) -> dict[str, tuple[int, str, str]]:
    """Run the cases side by side (each is a cold interpreter start), each in its own directory."""
    def one(item: tuple[str, list[str]]) -> tuple[str, tuple[int, str, str]]:
        name, args = item
        home = tmp_path / name.replace(" ", "_")
        home.mkdir()
        return name, _run(home, args, stdout_closed=stdout_closed)

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(pool.map(one, cases.items()))


def test_bad_input_to_every_subcommand_is_a_sentence_even_with_stdout_closed(tmp_path: Path) -> None:
    """The sentence goes to stderr, so it reaches the person even when stdout's reader is gone."""
    results = _run_all(tmp_path, {name: args for name, (args, _) in BAD_INPUT.items()}, stdout_closed=True)
    problems = []
    for name, (code, _, stderr) in sorted(results.items()):
        expected = BAD_INPUT[name][1]
        if code == 0 or expected not in stderr or any(marker in stderr for marker in NO_TRACEBACK):
            problems.append(f"{name}: exit {code}, stderr: {stderr[-600:]!r}")
    assert not problems, "\n".join(problems)


def test_bad_input_with_stdout_open_reads_the_same() -> None:
    """With stdout open the same sentence, and nothing on stdout (spot check; the closed case covers all)."""
    import tempfile

    with tempfile.TemporaryDirectory() as home:
        code, stdout, stderr = _run(Path(home), ["tools", "--tools", "nope"], stdout_closed=False)
    assert code == 2 and "unknown tool(s): 'nope'" in stderr and stdout == ""
    assert not any(marker in stderr for marker in NO_TRACEBACK), stderr


# Commands that print, with stdout already closed: they end with 0 (the reader left; nothing failed).
PRINTING = {
    "tools --markdown": ["tools", "--markdown"],
    "doctor --json": ["doctor", "--json"],
    "install --dry-run": ["install", "--host", "cursor", "--dry-run", "--command", "/usr/bin/true"],
    "install-skill": ["install-skill", "--dir", "skills-here"],
    "logout": ["logout"],
}


def test_output_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    results = _run_all(tmp_path, PRINTING, stdout_closed=True)
    problems = [f"{name}: exit {code}, stderr: {stderr[-600:]!r}" for name, (code, _, stderr) in sorted(results.items())
                if code != 0 or any(marker in stderr for marker in NO_TRACEBACK)]
    assert not problems, "\n".join(problems)


def test_serve_whose_host_stopped_reading_ends_quietly(tmp_path: Path) -> None:
    with _closed_pipe() as stdout:
        process = subprocess.Popen([sys.executable, "-m", "mam_mcp.cli", "serve"], env=_env(tmp_path),
                                   stdin=subprocess.PIPE, stdout=stdout, stderr=subprocess.PIPE)
    try:
        assert process.stdin is not None and process.stderr is not None
        process.stdin.write(b'{"jsonrpc":"2.0","id":1,"method":"ping"}\n')  # its answer has nowhere to go
        process.stdin.flush()
        assert process.wait(timeout=WAIT_SECONDS) == 0
        stderr = process.stderr.read().decode()
        assert not any(marker in stderr for marker in NO_TRACEBACK), stderr
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def test_the_local_backends_commands_into_a_closed_pipe_end_quietly(tmp_path: Path) -> None:
    """`mam-mcp demo --json | head -1` (which leaves the backend running), then `local status`,
    `drafts list` and `tail` into closed pipes against that backend, and `local stop`."""
    from anyio.streams.buffered import BufferedByteReceiveStream

    def quiet(stderr: str) -> bool:
        return not any(marker in stderr for marker in NO_TRACEBACK) and "linkedin" not in stderr.lower()

    read_end, write_end = os.pipe()
    demo = subprocess.Popen([sys.executable, "-m", "mam_mcp.cli", "demo", "--json"], env=_env(tmp_path),
                            stdin=subprocess.DEVNULL, stdout=write_end, stderr=subprocess.PIPE, text=True)
    os.close(write_end)
    try:
        with os.fdopen(read_end, "r") as head:
            first = json.loads(head.readline())  # `head -1` reads one line, then goes away
        assert first["step"] == 1 and first["title"].startswith("Local mail backend")
        assert await anyio.to_thread.run_sync(lambda: demo.wait(timeout=WAIT_SECONDS)) == 0
        demo_err = demo.stderr.read() if demo.stderr else ""
        assert "demo failed" not in demo_err and quiet(demo_err), demo_err

        for args in (["local", "status"], ["drafts", "list"]):
            code, _, stderr = await anyio.to_thread.run_sync(lambda: _run(tmp_path, args, stdout_closed=True))
            assert code == 0 and quiet(stderr), (args, stderr)

        state = json.loads((tmp_path / "data" / "daemon.json").read_text())
        key = (tmp_path / "data" / "api_key").read_text().strip()
        import httpx2

        async with httpx2.AsyncClient(base_url=f"http://127.0.0.1:{state['httpPort']}",
                                      headers={"X-API-Key": key}) as http:
            inbox = (await http.post("/v1/inboxes", json={"username": "watched"})).json()
        with _closed_pipe() as stdout:
            tail = await anyio.open_process([sys.executable, "-m", "mam_mcp.cli", "tail"], env=_env(tmp_path),
                                            stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.PIPE)
        try:
            assert tail.stderr is not None
            errors = BufferedByteReceiveStream(tail.stderr)
            with anyio.fail_after(WAIT_SECONDS):
                await errors.receive_until(b"(Ctrl-C to stop)", 65536)  # subscribed

            def send_mail() -> None:
                with smtplib.SMTP("127.0.0.1", state["smtpPort"], timeout=10) as smtp:
                    smtp.sendmail("a@example.com", [inbox["email"]], b"Subject: hi\r\n\r\nhello\r\n")

            await anyio.to_thread.run_sync(send_mail)  # the first event's line has nowhere to go
            with anyio.fail_after(WAIT_SECONDS):
                assert await tail.wait() == 0
            rest = b""
            with contextlib.suppress(anyio.EndOfStream):
                while True:
                    rest += await errors.receive()
            assert quiet(rest.decode()), rest
        finally:
            if tail.returncode is None:
                tail.kill()
                await tail.wait()
            await tail.aclose()
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        stop = await anyio.to_thread.run_sync(lambda: _run(tmp_path, ["local", "stop"], stdout_closed=False))
        assert stop[0] == 0 and "mam-mcp daemon" in stop[1], stop
