"""`mam-mcp install` on temporary home directories, for every host and OS path layout."""

from __future__ import annotations

import io
import json
import os
import stat
from pathlib import Path

import pytest

from mam_mcp.commands.install import (
    HOSTS,
    SERVER_NAME,
    apply_plan,
    config_path,
    install,
    installed_command,
    plan_install,
    read_entry,
    server_entry,
)

COMMAND = "/opt/mam/bin/mam-mcp"
PLATFORMS = ("linux", "darwin", "win32")
OTHER_SERVERS = {
    "mcpServers": {
        "github": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-github"],
                   "env": {"GITHUB_TOKEN": "ghp_keep_me"}},
        "weather": {"url": "https://weather.example/mcp"},
    },
    "theme": "dark",
    "numbers": [1, 2.5, None, True],
    "unicode": "café ✓",
}


def _env(home: Path, platform: str) -> dict[str, str]:
    env = {"HOME": str(home), "MYAGENTMAIL_API_KEY": "tk_live_never_written_anywhere"}
    if platform == "win32":
        env = {"USERPROFILE": str(home), "APPDATA": str(home / "AppData" / "Roaming")}
    return env


EXPECTED_LAYOUT = {
    ("claude-desktop", "linux"): ".config/Claude/claude_desktop_config.json",
    ("claude-desktop", "darwin"): "Library/Application Support/Claude/claude_desktop_config.json",
    ("claude-desktop", "win32"): "AppData/Roaming/Claude/claude_desktop_config.json",
    ("claude-code", "linux"): ".claude.json",
    ("claude-code", "darwin"): ".claude.json",
    ("claude-code", "win32"): ".claude.json",
    ("cursor", "linux"): ".cursor/mcp.json",
    ("cursor", "darwin"): ".cursor/mcp.json",
    ("cursor", "win32"): ".cursor/mcp.json",
    ("windsurf", "linux"): ".codeium/windsurf/mcp_config.json",
    ("windsurf", "darwin"): ".codeium/windsurf/mcp_config.json",
    ("windsurf", "win32"): ".codeium/windsurf/mcp_config.json",
}


def _run(home: Path, platform: str, host: str, *, dry_run: bool = False, scope: str = "user",
         project: Path | None = None) -> tuple[int, str]:
    """stdout and stderr together (failures go to stderr)."""
    out, err = io.StringIO(), io.StringIO()
    code = install(host=host, scope=scope, dry_run=dry_run, command=COMMAND, env=_env(home, platform),  # type: ignore[arg-type]
                   platform=platform, project_dir=project or home / "project", out=out, err=err)
    return code, out.getvalue() + err.getvalue()


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("host", HOSTS)
def test_config_paths_per_host_and_os(tmp_path: Path, host: str, platform: str) -> None:
    path = config_path(host, "user", env=_env(tmp_path, platform), platform=platform)
    assert path == tmp_path / EXPECTED_LAYOUT[(host, platform)]


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("host", HOSTS)
def test_fresh_file_gets_only_our_entry(tmp_path: Path, host: str, platform: str) -> None:
    code, output = _run(tmp_path, platform, host)
    assert code == 0, output
    path = tmp_path / EXPECTED_LAYOUT[(host, platform)]
    assert json.loads(path.read_text()) == {"mcpServers": {SERVER_NAME: {"command": COMMAND, "args": ["serve"]}}}
    assert "tk_live" not in path.read_text()  # no key in a host config, ever
    assert not list(path.parent.glob("*.bak"))  # nothing to back up
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("host", HOSTS)
def test_other_servers_and_settings_are_kept_and_a_backup_made(tmp_path: Path, host: str, platform: str) -> None:
    path = tmp_path / EXPECTED_LAYOUT[(host, platform)]
    path.parent.mkdir(parents=True, exist_ok=True)
    original = json.dumps(OTHER_SERVERS, indent=4, ensure_ascii=False)
    path.write_text(original, encoding="utf-8")
    os.chmod(path, 0o640)

    code, output = _run(tmp_path, platform, host)
    assert code == 0 and "updated" in output
    data = json.loads(path.read_text(encoding="utf-8"))
    expected = json.loads(original)
    expected["mcpServers"][SERVER_NAME] = {"command": COMMAND, "args": ["serve"]}
    assert data == expected
    assert list(data) == list(expected)  # key order kept
    backups = list(path.parent.glob(f"{path.name}.*.bak"))
    assert len(backups) == 1 and backups[0].read_text(encoding="utf-8") == original
    assert stat.S_IMODE(path.stat().st_mode) == 0o640

    # Re-run: nothing to do, no write, no new backup.
    written = path.read_bytes()
    code, output = _run(tmp_path, platform, host)
    assert code == 0 and "already up to date" in output
    assert path.read_bytes() == written
    assert len(list(path.parent.glob(f"{path.name}.*.bak"))) == 1


@pytest.mark.parametrize("host", HOSTS)
def test_dry_run_prints_a_diff_and_writes_nothing(tmp_path: Path, host: str) -> None:
    path = tmp_path / EXPECTED_LAYOUT[(host, "linux")]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(OTHER_SERVERS, indent=4) + "\n")  # 4 spaces and \u escapes: the file's style is kept
    before = path.read_bytes()
    code, output = _run(tmp_path, "linux", host, dry_run=True)
    assert code == 0
    assert path.read_bytes() == before
    assert f"--- {path}" in output and f"+++ {path}" in output
    assert f'+        "{SERVER_NAME}": {{' in output
    assert f'+            "command": "{COMMAND}",' in output
    assert not [line for line in output.splitlines() if line.startswith("-") and not line.startswith("---")]
    assert "ghp_keep_me" not in output, "other servers' secrets in the host config are not echoed as context"


def test_dry_run_on_a_missing_file_diffs_from_dev_null(tmp_path: Path) -> None:
    code, output = _run(tmp_path, "darwin", "claude-desktop", dry_run=True)
    assert code == 0 and "--- /dev/null" in output
    assert not (tmp_path / EXPECTED_LAYOUT[("claude-desktop", "darwin")]).exists()


def test_an_outdated_entry_is_updated_keeping_the_users_env(tmp_path: Path) -> None:
    path = tmp_path / ".cursor" / "mcp.json"
    path.parent.mkdir()
    old = {"mcpServers": {SERVER_NAME: {"command": "mam-mcp", "args": ["serve", "--old"], "env": {"X": "1"}}}}
    path.write_text(json.dumps(old))
    assert _run(tmp_path, "linux", "cursor")[0] == 0
    assert read_entry(path) == {"command": COMMAND, "args": ["serve"], "env": {"X": "1"}}


def test_all_touches_only_hosts_found(tmp_path: Path) -> None:
    (tmp_path / ".cursor").mkdir()
    code, output = _run(tmp_path, "linux", "all")
    assert code == 0
    assert read_entry(tmp_path / ".cursor" / "mcp.json") is not None
    assert not (tmp_path / ".codeium").exists() and not (tmp_path / ".config" / "Claude").exists()
    assert "windsurf: not found" in output
    # A home directory is no sign of Claude Code: its own files or its command are.
    assert not (tmp_path / ".claude.json").exists()
    assert "claude-code: not found" in output and "no `claude` on PATH" in output


def test_all_on_a_machine_without_hosts_says_so_and_how_to_name_one(tmp_path: Path) -> None:
    code, output = _run(tmp_path, "linux", "all")
    assert code == 0 and "No MCP host found on this machine" in output and "--host claude-code" in output
    assert not list(tmp_path.rglob("*.json"))


@pytest.mark.parametrize("evidence", ["dot-claude-dir", "claude-on-path"])
def test_claude_code_is_found_by_its_own_files_or_its_command(tmp_path: Path, evidence: str) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home)}
    if evidence == "dot-claude-dir":
        (home / ".claude").mkdir()
    else:
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        (bin_dir / "claude").write_text("#!/bin/sh\n")
        (bin_dir / "claude").chmod(0o755)
        env["PATH"] = str(bin_dir)
    out = io.StringIO()
    assert install(host="all", scope="user", dry_run=False, command=COMMAND, env=env, platform="linux",
                   project_dir=tmp_path, out=out, err=io.StringIO()) == 0
    assert read_entry(home / ".claude.json") == {"command": COMMAND, "args": ["serve"]}
    assert "cursor: not found" in out.getvalue()


def test_a_project_file_runs_mam_mcp_from_path_and_says_it_is_shared(tmp_path: Path) -> None:
    project = tmp_path / "repo"
    project.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    out = io.StringIO()
    code = install(host="claude-code", scope="project", dry_run=False, command=None, env={"HOME": str(tmp_path),
                   "PATH": str(bin_dir)}, platform="linux", project_dir=project, out=out, err=io.StringIO())
    assert code == 0
    entry = read_entry(project / ".mcp.json")
    assert entry == {"command": "mam-mcp", "args": ["serve"]}  # no path of this machine
    said = out.getvalue()
    assert ".mcp.json is shared with the team" in said and "found on PATH" in said
    assert "`mam-mcp` is not on PATH here" in said  # this machine's PATH has no mam-mcp

    (bin_dir / "mam-mcp").write_text("#!/bin/sh\n")
    (bin_dir / "mam-mcp").chmod(0o755)
    out = io.StringIO()
    install(host="cursor", scope="project", dry_run=True, command=None, env={"HOME": str(tmp_path),
            "PATH": str(bin_dir)}, platform="linux", project_dir=project, out=out, err=io.StringIO())
    assert '"command": "mam-mcp"' in out.getvalue() and "not on PATH here" not in out.getvalue()


def test_the_uvx_launcher_writes_the_registry_form(tmp_path: Path) -> None:
    out = io.StringIO()
    code = install(host="claude-code", scope="project", dry_run=False, command=None, env={"HOME": str(tmp_path)},
                   platform="linux", project_dir=tmp_path, out=out, err=io.StringIO(), launcher="uvx")
    assert code == 0
    assert read_entry(tmp_path / ".mcp.json") == {"command": "uvx", "args": ["mam-mcp", "serve"]}
    assert "`uvx mam-mcp serve`" in out.getvalue() and "published" in out.getvalue()


def test_a_host_that_cannot_be_configured_is_reported_on_stderr(tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    code = install(host="windsurf", scope="project", dry_run=False, command=COMMAND, env={"HOME": str(tmp_path)},
                   platform="linux", project_dir=tmp_path, out=out, err=err)
    assert code == 1 and "windsurf: has no project-scope config" in err.getvalue() and out.getvalue() == ""


def test_project_scope_for_claude_code_and_cursor(tmp_path: Path) -> None:
    project = tmp_path / "repo"
    project.mkdir()
    for host, relative in (("claude-code", ".mcp.json"), ("cursor", ".cursor/mcp.json")):
        code, _ = _run(tmp_path, "linux", host, scope="project", project=project)
        assert code == 0
        assert read_entry(project / relative) == {"command": COMMAND, "args": ["serve"]}
    code, output = _run(tmp_path, "linux", "windsurf", scope="project", project=project)
    assert code == 1 and "no project-scope config" in output


def test_invalid_json_is_left_alone_with_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / ".cursor" / "mcp.json"
    path.parent.mkdir()
    path.write_text('{"mcpServers": {,}}')
    code, output = _run(tmp_path, "linux", "cursor")
    assert code == 1 and "not valid JSON" in output and "fix or move it" in output
    assert path.read_text() == '{"mcpServers": {,}}'
    assert not list(path.parent.glob("*.bak"))


def test_plan_and_apply_are_separate_steps(tmp_path: Path) -> None:
    path = tmp_path / "x" / "mcp.json"
    plan = plan_install("cursor", "user", path, server_entry(COMMAND))
    assert plan.changed and not path.exists()
    assert apply_plan(plan) is None and read_entry(path) is not None
    assert not plan_install("cursor", "user", path, server_entry(COMMAND)).changed


def test_installed_command_is_an_absolute_path(tmp_path: Path) -> None:
    script = tmp_path / "bin" / "mam-mcp"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\n")
    assert installed_command(argv0=str(script)) == str(script)
    python = tmp_path / "bin" / "python"
    assert installed_command(argv0="-c", executable=str(python)) == str(script)
    assert Path(installed_command()).is_absolute()


# --- install-skill ----------------------------------------------------------------------------------------
def test_install_skill_copies_the_shipped_skill(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mam_mcp.cli import main
    from mam_mcp.resources import skills_dir

    target = tmp_path / "proj" / ".claude" / "skills"
    assert main(["install-skill", "--dir", str(target)]) == 0
    installed = target / "myagentmail"
    shipped = sorted(p.relative_to(skills_dir()) for p in skills_dir().rglob("*.md"))
    assert shipped and sorted(p.relative_to(installed) for p in installed.rglob("*.md")) == shipped
    assert (installed / "SKILL.md").read_text() == (skills_dir() / "SKILL.md").read_text()
    assert "Installed the myagentmail skill" in capsys.readouterr().out

    (installed / "notes.md").write_text("mine")  # a file of the user's is left alone
    assert main(["install-skill", "--dir", str(target)]) == 0
    assert "already up to date" in capsys.readouterr().out
    assert (installed / "notes.md").read_text() == "mine"


# --- README host sections and server.json stay true -------------------------------------------------------------
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("host", HOSTS)
def test_hosts_doc_shows_what_install_dry_run_prints(host: str) -> None:
    out = io.StringIO()
    install(host=host, scope="user", dry_run=True, command="/home/you/.local/bin/mam-mcp",
            env={"HOME": "/home/you"}, platform="linux", project_dir=Path("/home/you/project"), out=out)
    assert out.getvalue().strip() in (ROOT / "README.md").read_text(encoding="utf-8")


def test_server_json_matches_the_package_and_the_mcp_name_line() -> None:
    import re

    from mam_mcp import __version__

    manifest = json.loads((ROOT / "server.json").read_text(encoding="utf-8"))
    assert manifest["$schema"].startswith("https://static.modelcontextprotocol.io/schemas/")
    assert re.fullmatch(r"io\.github\.[a-zA-Z0-9.-]+/[a-zA-Z0-9._-]+", manifest["name"])
    assert 1 <= len(manifest["description"]) <= 100  # the registry rejects longer ones
    assert manifest["version"] == __version__
    (package,) = manifest["packages"]
    assert package["registryType"] == "pypi" and package["identifier"] == "mam-mcp"
    assert package["version"] == __version__ and package["transport"] == {"type": "stdio"}
    assert package["packageArguments"] == [{"type": "positional", "value": "serve"}]
    secrets = [v for v in package["environmentVariables"] if v.get("isSecret")]
    assert [v["name"] for v in secrets] == ["MYAGENTMAIL_API_KEY"] and not secrets[0]["isRequired"]
    marker = f"mcp-name: {manifest['name']}"
    assert marker in (ROOT / "README.md").read_text(encoding="utf-8")
