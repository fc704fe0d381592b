"""Shared fixtures: isolated settings and MCP clients against build_server."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from mam_mcp.config import Settings

# `pytester` runs a user's test file in a child pytest (tests/testing/: the mam_inbox plugin's entry point).
pytest_plugins = ["pytester"]

FAKE_KEY = "tk_fake_0123456789abcdef"


def make_settings(tmp_path: Path, *, hosted: bool = True, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Settings isolated from the developer's machine (HOME, config and data dirs under tmp_path)."""
    base = {"HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "config"), "XDG_DATA_HOME": str(tmp_path / "data")}
    if hosted:
        base["MYAGENTMAIL_API_KEY"] = FAKE_KEY
        base["MYAGENTMAIL_BASE_URL"] = "http://fake"
    base.update(env or {})
    return Settings.load(env=base, overrides=overrides, platform="linux")


@pytest.fixture
def settings_factory(tmp_path: Path):  # type: ignore[no-untyped-def]
    def factory(**kwargs: Any) -> Settings:
        return make_settings(tmp_path, **kwargs)

    return factory
