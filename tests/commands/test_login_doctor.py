"""`mam-mcp login` / `logout` against the strict fake, and `mam-mcp doctor` on healthy and broken set-ups."""

from __future__ import annotations

import io
import json
import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mam_mcp.cli import main
from mam_mcp.client import MamClient
from mam_mcp.commands.doctor import DoctorReport, diagnose, render_text
from mam_mcp.commands.login import describe_key, login, logout
from mam_mcp.config import Settings
from tests.conftest import FAKE_KEY, make_settings
from tests.fakes.hosted_api import FakeHostedAPI

COMMAND = "/opt/mam/bin/mam-mcp"
VENDOR_FIELDS = {"workspaceId": "ws_123", "email": "dev@example.com", "baseUrl": "http://fake"}


@pytest.fixture
def fake() -> FakeHostedAPI:
    return FakeHostedAPI()


def _unauthenticated_settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, hosted=False, env={"MYAGENTMAIL_BASE_URL": "http://fake"})


# --- login / logout -------------------------------------------------------------------------------------
def test_login_checks_the_key_and_merges_it_into_the_vendor_file(tmp_path: Path, fake: FakeHostedAPI) -> None:
    fake.seed_inbox("scout")
    settings = _unauthenticated_settings(tmp_path)
    path = settings.credentials_path
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({**VENDOR_FIELDS, "apiKey": "tk_old_key_000000"}))
    out, err = io.StringIO(), io.StringIO()

    code = login(settings, f"  {FAKE_KEY}\n", out=out, err=err, transport=fake.transport())

    assert code == 0, err.getvalue()
    assert json.loads(path.read_text()) == {**VENDOR_FIELDS, "apiKey": FAKE_KEY}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "tenant key tk_fake…" in out.getvalue() and "1 inbox visible" in out.getvalue()
    assert FAKE_KEY not in out.getvalue() + err.getvalue()
    assert [(r.method, r.path) for r in fake.requests] == [("GET", "/v1/inboxes")]
    assert Settings.load(env={"XDG_CONFIG_HOME": str(tmp_path / "config"), "HOME": str(tmp_path)},
                         platform="linux").api_key.get_secret_value() == FAKE_KEY  # type: ignore[union-attr]


def test_login_with_a_refused_key_saves_nothing(tmp_path: Path, fake: FakeHostedAPI) -> None:
    settings = _unauthenticated_settings(tmp_path)
    wrong = "tk_wrong_key_9876543210"
    out, err = io.StringIO(), io.StringIO()
    assert login(settings, wrong, out=out, err=err, transport=fake.transport()) == 1
    assert not settings.credentials_path.exists()
    assert "refused key tk_wron…" in err.getvalue() and "nothing saved" in err.getvalue()
    assert wrong not in out.getvalue() + err.getvalue()


def test_login_refuses_to_overwrite_a_file_it_cannot_read(tmp_path: Path, fake: FakeHostedAPI) -> None:
    settings = _unauthenticated_settings(tmp_path)
    settings.credentials_path.parent.mkdir(parents=True)
    settings.credentials_path.write_text("not json")
    err = io.StringIO()
    assert login(settings, FAKE_KEY, out=io.StringIO(), err=err, transport=fake.transport()) == 1
    assert settings.credentials_path.read_text() == "not json"
    assert "not valid JSON" in err.getvalue()


def test_logout_removes_only_the_key(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, hosted=False)
    path = settings.credentials_path
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({**VENDOR_FIELDS, "apiKey": FAKE_KEY}))
    out = io.StringIO()
    assert logout(settings, out=out, err=io.StringIO()) == 0
    assert json.loads(path.read_text()) == VENDOR_FIELDS
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_text(json.dumps({"apiKey": FAKE_KEY}))
    assert logout(settings, out=out, err=io.StringIO()) == 0
    assert not path.exists()  # nothing else in it: the file goes
    assert logout(settings, out=out, err=io.StringIO()) == 0 and "nothing to do" in out.getvalue()
    assert FAKE_KEY not in out.getvalue()


def test_logout_says_when_the_environment_still_sets_a_key(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)  # key from MYAGENTMAIL_API_KEY
    out = io.StringIO()
    logout(settings, out=out, err=io.StringIO())
    assert "still set by MYAGENTMAIL_API_KEY" in out.getvalue()


def test_describe_key_shows_scope_and_a_short_prefix_only() -> None:
    assert describe_key("tk_abcdef123456").prefix == "tk_abcd…"
    assert describe_key("wk_abcdef123456").scope == "workspace"
    assert describe_key("ak_abcdef123456").scope == "inbox"
    assert describe_key("mam_abcdef123456").scope == "inbox (legacy)"
    assert describe_key("sk-whatever-123").scope == "unknown"


# --- doctor -----------------------------------------------------------------------------------------------
def _factory(fake: FakeHostedAPI, key: str = FAKE_KEY):  # type: ignore[no-untyped-def]
    async def factory(settings: Settings) -> MamClient:
        return MamClient(base_url="http://fake", api_key=key, transport=fake.transport())

    return factory


def _home_with_cursor(home: Path, command: str) -> dict[str, str]:
    config = home / ".cursor" / "mcp.json"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(json.dumps({"mcpServers": {"myagentmail": {"command": command, "args": ["serve"]}}}))
    return {"HOME": str(home)}


def _by_name(report: DoctorReport) -> dict[str, Any]:
    return {check.name: check for check in report.checks}


async def test_doctor_healthy_hosted(tmp_path: Path, fake: FakeHostedAPI) -> None:
    fake.seed_inbox("scout")
    session = fake.linkedin.add_session("Founder")  # type: ignore[attr-defined]
    env = _home_with_cursor(tmp_path / "home", COMMAND)
    report = await diagnose(make_settings(tmp_path), env=env, platform="linux", project_dir=tmp_path,
                            client_factory=_factory(fake), command=COMMAND)
    checks = _by_name(report)
    assert report.ok, render_text(report)
    assert checks["mode"].detail.startswith("hosted")
    assert checks["api_key"].data == {"prefix": "tk_fake…", "scope": "tenant"}
    assert checks["api"].status == "ok" and checks["api"].data["inboxes"] == 1
    assert checks["websocket"].status == "ok"
    assert checks["linkedin"].status == "ok" and checks["linkedin"].data["connected"] == 1
    assert "Founder" in checks["linkedin"].detail and session
    assert checks["host:cursor"].status == "ok"
    dumped = report.model_dump_json()
    assert FAKE_KEY not in dumped and FAKE_KEY[8:] not in dumped


async def test_doctor_broken_hosted_says_how_to_fix_each_failure(tmp_path: Path, fake: FakeHostedAPI) -> None:
    env = _home_with_cursor(tmp_path / "home", "/somewhere/else/mam-mcp")
    report = await diagnose(make_settings(tmp_path), env=env, platform="linux", project_dir=tmp_path,
                            client_factory=_factory(fake, key="tk_revoked_0000000000"), command=COMMAND)
    checks = _by_name(report)
    assert not report.ok
    assert checks["api"].status == "fail" and "mam-mcp login" in (checks["api"].fix or "")
    assert "websocket" not in checks  # not tried once the API refused the key
    assert checks["host:cursor"].status == "fail"
    assert "mam-mcp install --host cursor" in (checks["host:cursor"].fix or "")
    assert all(check.fix for check in report.checks if check.status == "fail")
    assert "tk_revoked_0000000000" not in report.model_dump_json() + render_text(report)


async def test_doctor_unreachable_api(tmp_path: Path) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    settings = make_settings(tmp_path, env={"MYAGENTMAIL_BASE_URL": f"http://127.0.0.1:{port}"})
    report = await diagnose(settings, env={"HOME": str(tmp_path / "home")}, platform="linux", project_dir=tmp_path,
                            command=COMMAND)
    checks = _by_name(report)
    assert not report.ok and checks["api"].status == "fail"
    assert "MYAGENTMAIL_BASE_URL" in (checks["api"].fix or "")
    assert checks["hosts"].status == "warn" and "mam-mcp install" in (checks["hosts"].fix or "")


async def test_doctor_warns_when_no_linkedin_account_or_a_paused_one(tmp_path: Path, fake: FakeHostedAPI) -> None:
    settings = make_settings(tmp_path)
    env = {"HOME": str(tmp_path / "home")}
    report = await diagnose(settings, env=env, platform="linux", project_dir=tmp_path,
                            client_factory=_factory(fake), command=COMMAND)
    linkedin = _by_name(report)["linkedin"]
    assert linkedin.status == "warn" and "connect" in (linkedin.fix or "")


@pytest.fixture
def free_ports() -> Iterator[tuple[int, int]]:
    sockets = [socket.socket() for _ in range(2)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = (sockets[0].getsockname()[1], sockets[1].getsockname()[1])
    for sock in sockets:
        sock.close()
    yield ports


def _local_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, http_port: int, smtp_port: int) -> None:
    for name in ("MYAGENTMAIL_API_KEY", "MYAGENTMAIL_KEY", "MYAGENTMAIL_BASE_URL", "MAM_MCP_CONFIG_DIR",
                 "MAM_LOCAL_DATA_DIR", "APPDATA", "LOCALAPPDATA", "MAM_MCP_TOOLSETS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("MAM_MCP_MODE", "local")
    monkeypatch.setenv("MAM_LOCAL_HTTP_PORT", str(http_port))
    monkeypatch.setenv("MAM_LOCAL_SMTP_PORT", str(smtp_port))
    monkeypatch.chdir(tmp_path)


def test_doctor_json_local_mode_healthy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], free_ports: tuple[int, int]
) -> None:
    _local_env(monkeypatch, tmp_path, *free_ports)
    assert main(["doctor", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    checks = {c["name"]: c for c in report["checks"]}
    assert report["ok"] is True and report["mode"] == "local"
    assert checks["local_daemon"]["data"]["running"] is False
    assert checks["smtp_port"]["status"] == "ok"
    assert checks["linkedin"]["status"] == "skip"


def test_doctor_json_local_mode_smtp_port_taken_exits_non_zero(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], free_ports: tuple[int, int]
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        _local_env(monkeypatch, tmp_path, free_ports[0], squatter.getsockname()[1])
        assert main(["doctor", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    smtp = next(c for c in report["checks"] if c["name"] == "smtp_port")
    assert report["ok"] is False and smtp["status"] == "fail"
    assert "MAM_LOCAL_SMTP_PORT" in smtp["fix"]


def test_doctor_text_output_marks_failures_with_fixes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], free_ports: tuple[int, int]
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        _local_env(monkeypatch, tmp_path, free_ports[0], squatter.getsockname()[1])
        assert main(["doctor"]) == 1
    text = capsys.readouterr().out
    assert "[FAIL] smtp_port" in text and "fix: set MAM_LOCAL_SMTP_PORT" in text


async def test_doctor_local_mode_with_the_daemon_running(tmp_path: Path) -> None:
    """A real daemon (started as a tool call would start it): daemon, SMTP banner, API and WebSocket all pass."""
    from mam_mcp.local.daemon.launcher import ensure_daemon
    from tests.local.daemon_process import kill_pid

    settings = make_settings(tmp_path, hosted=False, env={"MAM_LOCAL_HTTP_PORT": "0", "MAM_LOCAL_SMTP_PORT": "0"})
    config = settings.local_config()
    try:
        handle = await ensure_daemon(config, timeout=30)
        report = await diagnose(settings, env={"HOME": str(tmp_path / "home")}, platform="linux",
                                project_dir=tmp_path, command=COMMAND)
    finally:
        state_file = config.data_dir / "daemon.json"
        state = json.loads(state_file.read_text()) if state_file.exists() else {}
        if "pid" in state:
            kill_pid(int(state["pid"]))
    checks = _by_name(report)
    assert report.ok, render_text(report)
    assert checks["local_daemon"].data["running"] is True
    assert checks["smtp_port"].status == "ok" and checks["smtp_port"].data["port"] == handle.smtp_port
    assert checks["api"].status == "ok" and checks["websocket"].status == "ok"
    assert handle.api_key not in report.model_dump_json()


def test_doctor_summary_names_warnings_instead_of_all_good() -> None:
    from mam_mcp.commands.doctor import Check

    warned = DoctorReport(ok=True, mode="local", checks=[
        Check(name="mode", status="ok", detail="local"),
        Check(name="hosts", status="warn", detail="no MCP host is configured", fix="run `mam-mcp install`"),
    ])
    text = render_text(warned)
    assert "all good" not in text and text.endswith("nothing failed; 1 warning (see the fix: lines)")
    clean = DoctorReport(ok=True, mode="local", checks=[Check(name="mode", status="ok", detail="local")])
    assert render_text(clean).endswith("all good")


async def test_doctor_accepts_a_shared_project_entry_that_runs_mam_mcp_from_path(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, hosted=False, env={"MAM_LOCAL_HTTP_PORT": "1", "MAM_LOCAL_SMTP_PORT": "1"})
    project = tmp_path / "repo"
    project.mkdir()
    (project / ".mcp.json").write_text(json.dumps({"mcpServers": {"myagentmail": {"command": "mam-mcp", "args": ["serve"]}}}))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    env = {"HOME": str(tmp_path / "home"), "PATH": str(bin_dir)}

    def project_check() -> Any:
        return next(c for c in report.checks if c.name == "host:claude-code (project)")

    report = await diagnose(settings, env=env, platform="linux", project_dir=project, command=COMMAND)
    assert project_check().status == "warn" and "not on PATH here" in project_check().detail
    (bin_dir / "mam-mcp").write_text("#!/bin/sh\n")
    (bin_dir / "mam-mcp").chmod(0o755)
    report = await diagnose(settings, env=env, platform="linux", project_dir=project, command=COMMAND)
    assert project_check().status == "ok" and str(bin_dir / "mam-mcp") in project_check().detail


async def test_doctor_shows_the_consent_mode_and_the_outbound_policy_with_their_sources(
    tmp_path: Path, fake: FakeHostedAPI
) -> None:
    file = tmp_path / "mam.toml"
    file.write_text('confirm_sends = "all"\n[outbound]\nblock = ["competitor.example"]\n', encoding="utf-8")
    settings = make_settings(tmp_path, env={"MAM_MCP_CONFIG": str(file), "MAM_OUTBOUND_SENDS_PER_HOUR": "20"})
    report = await diagnose(settings, env=_home_with_cursor(tmp_path / "home", COMMAND), platform="linux",
                            project_dir=tmp_path, client_factory=_factory(fake), command=COMMAND)
    checks = _by_name(report)
    assert checks["send_consent"].detail.startswith("all: asks the person before every send")
    assert f"confirm_sends from {file}" in checks["send_consent"].detail
    policy = checks["outbound_policy"]
    assert policy.detail.startswith("never to: competitor.example; at most 20 sends per inbox per hour")
    assert f"block from {file}" in policy.detail and "sends_per_hour from MAM_OUTBOUND_SENDS_PER_HOUR" in policy.detail
    assert policy.data["block"] == ["competitor.example"] and policy.data["config_file"] == str(file)
    default = _by_name(await diagnose(make_settings(tmp_path / "plain"), env={"HOME": str(tmp_path / "h2")},
                                      platform="linux", project_dir=tmp_path, client_factory=_factory(fake)))
    assert default["send_consent"].detail.endswith("(default)")
    assert default["outbound_policy"].detail == "no limits beyond the recipient rule (default)"
