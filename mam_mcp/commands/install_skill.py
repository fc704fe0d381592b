"""`mam-mcp install-skill [--dir .claude/skills]`: copy our skill folder for Claude Code skills.

Copies `skills/myagentmail/` (SKILL.md + references) shipped in the wheel to
`<dir>/myagentmail/`. Files we ship are replaced; other files in that folder are left alone.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from mam_mcp.config import Settings

__all__ = ["DEFAULT_DIR", "add_arguments", "install_skill", "run"]

DEFAULT_DIR = Path(".claude") / "skills"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", dest="skills_dir", default=str(DEFAULT_DIR),
                        help=f"skills folder (default: {DEFAULT_DIR} in the current directory; "
                        "~/.claude/skills for every project)")


def install_skill(target_root: Path, source: Path | None = None) -> tuple[Path, list[Path], list[Path]]:
    """Copy the skill; returns (skill folder, files written, files already identical)."""
    from mam_mcp.resources import skills_dir

    source = source or skills_dir()
    target = target_root.expanduser() / source.name
    written: list[Path] = []
    unchanged: list[Path] = []
    for file in sorted(p for p in source.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        destination = target / file.relative_to(source)
        data = file.read_bytes()
        if destination.is_file() and destination.read_bytes() == data:
            unchanged.append(destination)
            continue
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, destination)
        written.append(destination)
    return target, written, unchanged


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        target, written, unchanged = install_skill(Path(args.skills_dir))
    except FileNotFoundError as error:
        print(f"mam-mcp: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"mam-mcp: cannot write the skill: {error.strerror} ({error.filename})", file=sys.stderr)
        return 1
    if written:
        print(f"Installed the myagentmail skill in {target} ({len(written)} file(s) written, "
              f"{len(unchanged)} already up to date).")
    else:
        print(f"The myagentmail skill in {target} is already up to date.")
    return 0
