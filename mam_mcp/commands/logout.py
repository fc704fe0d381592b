"""`mam-mcp logout`: remove the API key from the shared credentials file (other fields stay)."""

from __future__ import annotations

import argparse
import sys

from mam_mcp.config import Settings

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No flags: the credentials file is the one Settings resolved."""


def run(args: argparse.Namespace, settings: Settings) -> int:
    from mam_mcp.commands.login import logout

    return logout(settings, out=sys.stdout, err=sys.stderr)
