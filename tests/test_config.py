"""Settings resolution: precedence, mode choice, and the platform folders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mam_mcp.config import Settings, config_dir, default_data_dir


@pytest.mark.parametrize(
    ("platform", "env", "config", "data"),
    [
        ("linux", {"HOME": "/h"}, "/h/.config/myagentmail", "/h/.local/share/mam-mcp"),
        ("linux", {"HOME": "/h", "XDG_CONFIG_HOME": "/x/c", "XDG_DATA_HOME": "/x/d"}, "/x/c/myagentmail", "/x/d/mam-mcp"),
        ("darwin", {"HOME": "/Users/u"}, "/Users/u/Library/Application Support/myagentmail",
         "/Users/u/Library/Application Support/mam-mcp"),
        ("win32", {"USERPROFILE": "/U"}, "/U/AppData/Roaming/myagentmail", "/U/AppData/Local/mam-mcp"),
        ("win32", {"USERPROFILE": "/U", "APPDATA": "/A", "LOCALAPPDATA": "/L"}, "/A/myagentmail", "/L/mam-mcp"),
    ],
)
def test_platform_folders(platform: str, env: dict[str, str], config: str, data: str) -> None:
    assert config_dir(env, platform) == Path(config)
    assert default_data_dir(env, platform) == Path(data)


def test_precedence_flag_over_env_over_credentials_file(tmp_path: Path) -> None:
    creds = tmp_path / ".config" / "myagentmail" / "credentials"
    creds.parent.mkdir(parents=True)
    creds.write_text(json.dumps({"apiKey": "tk_from_file", "other": "kept"}))
    env = {"HOME": str(tmp_path)}
    from_file = Settings.load(env=env, platform="linux")
    assert from_file.mode == "hosted" and from_file.api_key.get_secret_value() == "tk_from_file"
    from_env = Settings.load(env={**env, "MYAGENTMAIL_API_KEY": "tk_from_env"}, platform="linux")
    assert from_env.api_key.get_secret_value() == "tk_from_env" and "MYAGENTMAIL_API_KEY" in from_env.mode_reason
    from_flag = Settings.load(env={**env, "MYAGENTMAIL_API_KEY": "tk_from_env"}, overrides={"api_key": "tk_flag"}, platform="linux")
    assert from_flag.api_key.get_secret_value() == "tk_flag"


def test_no_key_means_local_and_secrets_are_masked(tmp_path: Path) -> None:
    settings = Settings.load(env={"HOME": str(tmp_path), "MAM_SMTP_RELAY_URL": "smtps://u:pw-123@relay:465"}, platform="linux")
    assert settings.mode == "local" and "no API key" in settings.mode_reason
    assert "pw-123" not in repr(settings) and settings.local_config().relay_url == "smtps://u:pw-123@relay:465"
    with pytest.raises(ValueError, match="mam-mcp login"):
        Settings.load(env={"HOME": str(tmp_path), "MAM_MCP_MODE": "hosted"}, platform="linux")


def test_returned_ids_are_bounded_and_forget_the_oldest() -> None:
    from mam_mcp.toolkit.runtime import BoundedIdSet

    ids = BoundedIdSet(3)
    for item in ("a", "b", "c", "d"):
        ids.add(item)
    assert "a" not in ids and list(ids) == ["b", "c", "d"] and len(ids) == 3
    ids.add("b")  # seen again: now the newest
    ids.add("e")
    assert list(ids) == ["d", "b", "e"]


def test_catch_all_is_off_by_default_and_set_by_flag_over_environment(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path)}
    assert Settings.load(env=env, platform="linux").local_config().catch_all_inbox is None
    from_env = Settings.load(env={**env, "MAM_LOCAL_CATCH_ALL": " qa "}, platform="linux")
    assert from_env.local_config().catch_all_inbox == "qa"
    flagged = Settings.load(env={**env, "MAM_LOCAL_CATCH_ALL": "qa"}, overrides={"catch_all": "inbox"}, platform="linux")
    assert flagged.local_config().catch_all_inbox == "inbox"


def test_catch_all_flag_reaches_the_daemon_config_from_the_command_line(tmp_path: Path) -> None:
    from mam_mcp.cli import build_parser
    from mam_mcp.commands.local import local_config_from_args

    args = build_parser(only="local").parse_args(["local", "--catch-all", "qa"])
    settings = Settings.load(env={"HOME": str(tmp_path)}, platform="linux")
    assert local_config_from_args(args, settings).catch_all_inbox == "qa"
    serve = build_parser(only="serve").parse_args(["serve", "--catch-all", "qa"])
    assert serve.catch_all == "qa"


def test_the_foreground_daemon_says_whether_a_catch_all_is_on(tmp_path: Path) -> None:
    import io

    from mam_mcp.commands.local import describe_daemon
    from mam_mcp.local.config import LocalConfig

    on, off = io.StringIO(), io.StringIO()
    describe_daemon(LocalConfig(data_dir=tmp_path, catch_all_inbox="qa"), {}, on)
    describe_daemon(LocalConfig(data_dir=tmp_path), {}, off)
    assert "Catch-all: unknown names on mam.localhost go to qa" in on.getvalue()
    assert "Catch-all: off (unknown names are refused)" in off.getvalue()
