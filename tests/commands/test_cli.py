"""The `mam-mcp` command line: help, catalogue, and what happens with a broken configuration."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def _run(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MYAGENTMAIL_", "MAM_"))}
    base.update({"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "c"), "XDG_DATA_HOME": str(tmp_path / "d"),
                 "MAM_LOCAL_SMTP_PORT": "1", "MAM_LOCAL_HTTP_PORT": "1"})
    base.update(env or {})
    return subprocess.run([sys.executable, "-m", "mam_mcp.cli", *args], env=base, capture_output=True, text=True, timeout=60)


def test_help_lists_every_command(tmp_path: Path) -> None:
    out = _run(tmp_path, "--help").stdout
    for command in ("serve", "tools", "local", "demo", "install", "login", "logout", "doctor", "install-skill"):
        assert command in out


def test_tools_prints_the_selected_catalogue(tmp_path: Path) -> None:
    result = _run(tmp_path, "tools", "--toolsets", "drafts", "--read-only")
    assert result.returncode == 0
    assert "list_drafts" in result.stdout and "send_draft" not in result.stdout


def test_unknown_toolset_is_a_clear_error_not_a_traceback(tmp_path: Path) -> None:
    result = _run(tmp_path, "serve", "--toolsets", "emails")
    assert result.returncode == 2
    assert "unknown toolset(s): 'emails'" in result.stderr and "Traceback" not in result.stderr


def test_hosted_mode_without_a_key_stops_serve_but_doctor_explains(tmp_path: Path) -> None:
    serve = _run(tmp_path, "serve", env={"MAM_MCP_MODE": "hosted"})
    assert serve.returncode == 2 and "mam-mcp login" in serve.stderr
    doctor = _run(tmp_path, "doctor", env={"MAM_MCP_MODE": "hosted"})
    assert doctor.returncode != 0
    assert "[FAIL] mode" in doctor.stdout and "mam-mcp login" in doctor.stdout


def test_a_bad_port_is_named_and_repair_commands_do_not_crash(tmp_path: Path) -> None:
    for command in ("serve", "doctor", "tools"):
        result = _run(tmp_path, command, env={"MAM_LOCAL_HTTP_PORT": "eighty"})
        assert result.returncode == 2, (command, result.stderr)
        assert "MAM_LOCAL_HTTP_PORT must be a port number" in result.stderr and "Traceback" not in result.stderr


def test_unknown_command_lists_the_real_ones(tmp_path: Path) -> None:
    result = _run(tmp_path, "sevre")
    assert result.returncode == 2
    assert "invalid choice: 'sevre'" in result.stderr and "doctor" in result.stderr


def test_serve_builds_without_the_cyclic_collector_and_serves_with_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Start-up's objects are nearly all kept: collections during it find nothing (~10% of a cold
    start measured). The collector is back on, with start-up's objects frozen, before the first
    request; and on for every other command."""
    import gc

    from mam_mcp import cli, server, stdio

    seen: dict[str, object] = {}
    build = server.build_server

    def recording_build(settings, **kwargs):  # type: ignore[no-untyped-def]
        seen["building"] = gc.isenabled()
        return build(settings, **kwargs)

    async def no_serving(built: object) -> int:
        seen["serving"] = gc.isenabled()
        seen["frozen"] = gc.get_freeze_count()
        return 0

    for name in ("HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME"):
        monkeypatch.setenv(name, str(tmp_path))
    for name in [n for n in os.environ if n.startswith(("MYAGENTMAIL_", "MAM_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setattr(server, "build_server", recording_build)
    monkeypatch.setattr(stdio, "serve_stdio", no_serving)
    try:
        assert cli.main(["serve"]) == 0
    finally:
        gc.unfreeze()
    assert seen == {"building": False, "serving": True, "frozen": seen["frozen"]}
    assert isinstance(seen["frozen"], int) and seen["frozen"] > 10_000
    assert gc.isenabled()
    assert cli.main(["tools", "--toolsets", "drafts"]) == 0 and gc.isenabled()


def test_a_global_option_before_the_command_is_not_taken_for_the_command(tmp_path: Path) -> None:
    # `--mode local serve` (what a host config may say): "local" is the mode's value, not `mam-mcp local`
    from mam_mcp.cli import _requested_command

    assert _requested_command(["--mode", "local", "serve"]) == "serve"
    assert _requested_command(["--mode", "local"]) == "serve"
    assert _requested_command(["--data-dir", "serve", "local"]) == "local"
    assert _requested_command(["--mode=local", "tools"]) == "tools"
    assert _requested_command(["frobnicate"]) is None
    result = _run(tmp_path, "--mode", "local", "tools", "--toolsets", "drafts")
    assert result.returncode == 0, result.stderr
    assert "list_drafts" in result.stdout
