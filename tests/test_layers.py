"""Import fences (AST): dependencies point one way, cli -> server -> tools -> client; local stands apart."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "mam_mcp"


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _modules(folder: str) -> list[Path]:
    return sorted((PACKAGE / folder).rglob("*.py"))


@pytest.mark.parametrize(
    ("folder", "forbidden"),
    [
        ("local", ("mam_mcp.tools", "mam_mcp.server", "mam_mcp.client", "mam_mcp.commands", "mam_mcp.cli", "mcp")),
        ("client", ("mam_mcp.tools", "mam_mcp.server", "mam_mcp.commands", "mam_mcp.cli", "mam_mcp.local", "mcp")),
        ("tools", ("mam_mcp.server", "mam_mcp.commands", "mam_mcp.cli", "mam_mcp.http_app")),
    ],
)
def test_layer_does_not_import_upwards(folder: str, forbidden: tuple[str, ...]) -> None:
    offenders = []
    for path in _modules(folder):
        for name in _imports(path):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                offenders.append(f"{path.relative_to(PACKAGE.parent)} imports {name}")
    assert not offenders, "\n".join(offenders)


def test_header_safety_module_stands_alone() -> None:
    # Both `local` and `client` import mam_mcp.headers, so it may import neither (nor anything outside the stdlib).
    import sys

    imported = {name.split(".")[0] for name in _imports(PACKAGE / "headers.py")}
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported


def test_serve_start_up_path_has_no_heavy_imports() -> None:
    # What the SDK itself imports (uvicorn, starlette) is paid by any MCP server; this guards our own.
    import subprocess
    import sys

    # Built as `serve` builds it (local and hosted mode): what a request needs is imported when it comes.
    code = (
        "import sys, tempfile; import mam_mcp.cli, mam_mcp.server, mam_mcp.commands.serve; "
        "from mam_mcp.config import Settings; from mam_mcp.server import build_server; "
        "home = tempfile.mkdtemp(); "
        "env = {'HOME': home, 'XDG_CONFIG_HOME': home, 'XDG_DATA_HOME': home, 'MYAGENTMAIL_API_KEY': 'tk_x'}; "
        "build_server(Settings.load(env=env, overrides={'mode': sys.argv[1]}, platform='linux')); "
        "heavy = [m for m in ('inscriptis', 'lxml', 'aiosmtpd', 'aiosmtplib', 'sqlite3', 'mam_mcp.local.store', "
        "'mam_mcp.local.app', 'mam_mcp.http_app', 'bpe_openai', 'mam_mcp.extract', 'wsproto', "
        "'httpx2.websockets', 'mam_mcp.prompts', 'mam_mcp.resources') if m in sys.modules]; print(','.join(heavy))"
    )
    for mode in ("local", "hosted"):
        result = subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "", f"{mode}: heavy modules imported on the serve path: {result.stdout.strip()}"
