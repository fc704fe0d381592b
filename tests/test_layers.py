"""Import fences (AST): dependencies point one way, cli -> server -> tools -> toolkit -> client; local stands
apart; and no module imports another package's `_private` module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "mam_mcp"


def _package_of(path: Path) -> str:
    """The dotted package a module file belongs to (a package's __init__ belongs to the package itself)."""
    return ".".join(path.relative_to(PACKAGE.parent).parent.parts)


def _imported_names(source: str, package: str) -> set[str]:
    """Every module or name imported (lazily too), relative imports resolved against `package`."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            if base:
                names.add(base)
                names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _imports(path: Path) -> set[str]:
    return _imported_names(path.read_text(encoding="utf-8"), _package_of(path))


def _modules(where: str) -> list[Path]:
    target = PACKAGE / where
    return [target] if target.suffix == ".py" else sorted(target.rglob("*.py"))


_SERVER_LAYER = (
    "server.py", "http_app.py", "stdio.py", "resources.py", "prompts.py", "backends.py", "live_resources.py",
)  # fmt: skip
_LOCAL_ABOVE_STORAGE = (
    "mam_mcp.local.api", "mam_mcp.local.console", "mam_mcp.local.service", "mam_mcp.local.events",
    "mam_mcp.local.webhooks", "mam_mcp.local.relay", "mam_mcp.local.smtp", "mam_mcp.local.daemon",
)  # fmt: skip


def _local_above_storage_but(package: str) -> tuple[str, ...]:
    return tuple(name for name in _LOCAL_ABOVE_STORAGE if name != f"mam_mcp.local.{package}")


@pytest.mark.parametrize(
    ("folder", "forbidden"),
    [
        ("local", ("mam_mcp.tools", "mam_mcp.server", "mam_mcp.client", "mam_mcp.commands", "mam_mcp.cli", "mcp")),
        ("client", ("mam_mcp.tools", "mam_mcp.server", "mam_mcp.commands", "mam_mcp.cli", "mam_mcp.local", "mcp")),
        # The tools reach a backend only through the Runtime's client factory, never mam_mcp.local itself.
        ("tools", ("mam_mcp.server", "mam_mcp.commands", "mam_mcp.cli", "mam_mcp.http_app", "mam_mcp.local",
                   "mam_mcp.backends", "mam_mcp.resources", "mam_mcp.prompts", "mam_mcp.stdio")),
        # What tools are built from knows no tool, no server and no backend.
        ("toolkit", ("mam_mcp.tools", "mam_mcp.server", "mam_mcp.commands", "mam_mcp.cli", "mam_mcp.http_app",
                     "mam_mcp.local", "mam_mcp.backends", "mam_mcp.resources", "mam_mcp.prompts", "mam_mcp.stdio",
                     "mcp.server")),
        *((module, ("mam_mcp.commands", "mam_mcp.cli")) for module in _SERVER_LAYER),
        # Inside the local backend the data flows one way: storage and the event model know no caller,
        # SMTP only speaks SMTP, the service never reaches up into routes, the console or the daemon.
        # The pytest fixtures drive a daemon from outside, like any app: its config, never its insides.
        ("testing", ("mam_mcp.tools", "mam_mcp.toolkit", "mam_mcp.server", "mam_mcp.commands", "mam_mcp.cli",
                     "mam_mcp.http_app", "mam_mcp.backends", "mcp", "mam_mcp.local.store", *_LOCAL_ABOVE_STORAGE)),
        ("local/store", _LOCAL_ABOVE_STORAGE),
        ("local/events", ("mam_mcp.local.store", *_local_above_storage_but("events"))),
        ("local/smtp", ("mam_mcp.local.store", *_local_above_storage_but("smtp"))),
        ("local/service", ("mam_mcp.local.api", "mam_mcp.local.console", "mam_mcp.local.daemon", "mam_mcp.local.smtp",
                           "mam_mcp.local.webhooks")),
        # Routes call the services (service/accounts.py, mailbox.py, admin.py), never the store.
        ("local/api", ("mam_mcp.local.store",)),
    ],
)
def test_layer_does_not_import_upwards(folder: str, forbidden: tuple[str, ...]) -> None:
    offenders = []
    for path in _modules(folder):
        for name in _imports(path):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                offenders.append(f"{path.relative_to(PACKAGE.parent)} imports {name}")
    assert not offenders, "\n".join(offenders)


def _store_attribute_uses(source: str) -> list[int]:
    """Lines that reach an attribute named `store` (`backend.store.mail...`)."""
    return sorted(
        node.lineno for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Attribute) and node.attr == "store"
    )


def test_routes_never_reach_the_store() -> None:
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}:{line}"
        for path in _modules("local/api")
        for line in _store_attribute_uses(path.read_text(encoding="utf-8"))
    ]
    assert not offenders, "call a service method (LocalBackend.accounts/.mailbox/.admin) instead:\n" + "\n".join(
        offenders
    )
    assert _store_attribute_uses("async def f(b):\n    await b.store.mail.get(1)") == [2]  # the check can fail


def _private_owner(name: str) -> str | None:
    """The package owning the first `_private` part of an imported dotted name; None when there is none."""
    parts = name.split(".")
    for index, part in enumerate(parts):
        if part.startswith("_") and not (part.startswith("__") and part.endswith("__")):
            if parts[0] != "mam_mcp":
                return "\0"  # a private part of another distribution: never ours to import
            owner = ".".join(parts[:index])
            # `pkg._mod` is owned by pkg; `pkg.mod._name` (a private name of a module) by pkg too.
            return owner if (PACKAGE.parent.joinpath(*parts[:index]) / "__init__.py").is_file() else ".".join(parts[: index - 1])
    return None


def _private_imports(source: str, package: str) -> list[str]:
    found = []
    for name in sorted(_imported_names(source, package)):
        owner = _private_owner(name)
        if owner is not None and package != owner and not package.startswith(owner + "."):
            found.append(name)
    return found


def test_no_module_imports_another_packages_private_module() -> None:
    offenders = [
        f"{path.relative_to(PACKAGE.parent)} imports {name}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for name in _private_imports(path.read_text(encoding="utf-8"), _package_of(path))
    ]
    assert not offenders, "make it public (no leading underscore) or import it from its package:\n" + "\n".join(
        offenders
    )


def test_the_private_import_check_can_fail() -> None:
    # Other packages' private modules and names are caught, eagerly, lazily or relatively imported ...
    assert _private_imports("from mam_mcp.client._wire import Core", "mam_mcp.tools") == [
        "mam_mcp.client._wire",
        "mam_mcp.client._wire.Core",
    ]
    assert _private_imports("def f():\n    import mam_mcp.tools._hidden", "mam_mcp") == ["mam_mcp.tools._hidden"]
    assert _private_imports("from ..client import _wire", "mam_mcp.tools") == ["mam_mcp.client._wire"]
    assert _private_imports("from mam_mcp.client.http import _param", "mam_mcp.tools") == ["mam_mcp.client.http._param"]
    assert _private_imports("from httpx2._models import X", "mam_mcp.client") == ["httpx2._models", "httpx2._models.X"]
    # ... while a package's own private modules, dunders and public names are fine.
    assert _private_imports("from mam_mcp.client._wire import Core", "mam_mcp.client") == []
    assert _private_imports("from mam_mcp.client.http import _param", "mam_mcp.client") == []
    assert _private_imports("from mam_mcp import __version__\nimport mam_mcp.__main__", "mam_mcp.local") == []
    assert _private_imports("from mam_mcp.toolkit.results import ok", "mam_mcp.tools") == []


@pytest.mark.parametrize("module", ["headers.py", "signatures.py"])
def test_shared_module_stands_alone(module: str) -> None:
    # Both `local` and the CLI or `client` import these, so they may import neither (nor anything outside the stdlib).
    import sys

    imported = {name.split(".")[0] for name in _imports(PACKAGE / module)}
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported


# Kept off `serve`'s start-up path: what a request needs is imported when it comes.
HEAVY_ON_SERVE = (
    "inscriptis", "lxml", "aiosmtpd", "aiosmtplib", "sqlite3", "bpe_openai", "wsproto", "httpx2.websockets",
    "mam_mcp.local.store", "mam_mcp.local.api", "mam_mcp.local.daemon.launcher", "mam_mcp.http_app", "mam_mcp.extract",
    "mam_mcp.prompts", "mam_mcp.resources", "mam_mcp.client.event_stream",
    # the LinkedIn client and its response models come with the first LinkedIn request (~9 ms)
    "mam_mcp.client.linkedin", "mam_mcp.client.linkedin_models",
    # the email namespaces and their response models come with the first client, i.e. the first tool call (~7 ms)
    "mam_mcp.client.models", "mam_mcp.client.email", "mam_mcp.client.event_models",
)  # fmt: skip
# Local mode has no LinkedIn: its toolsets stay unimported.
ABSENT_IN_LOCAL_MODE = ("mam_mcp.tools.linkedin",)
# Hosted mode needs nothing of the local backend's configuration model (its defaults live apart).
ABSENT_IN_HOSTED_MODE = ("mam_mcp.local.config",)


def test_the_start_up_guard_names_modules_that_exist() -> None:
    # A module renamed or moved would make the guard below pass without checking anything.
    import importlib.util

    ours = [
        name
        for name in (*HEAVY_ON_SERVE, *ABSENT_IN_LOCAL_MODE, *ABSENT_IN_HOSTED_MODE)
        if name.startswith("mam_mcp.")
    ]
    assert [name for name in ours if importlib.util.find_spec(name) is None] == []


def test_serve_start_up_path_has_no_heavy_imports() -> None:
    # What the SDK itself imports (uvicorn, starlette) is paid by any MCP server; this guards our own.
    import subprocess
    import sys

    # Built as `serve` builds it (local and hosted mode).
    code = (
        "import sys, tempfile; import mam_mcp.cli, mam_mcp.server, mam_mcp.commands.serve; "
        "from mam_mcp.config import Settings; from mam_mcp.server import build_server; "
        "home = tempfile.mkdtemp(); "
        "env = {'HOME': home, 'XDG_CONFIG_HOME': home, 'XDG_DATA_HOME': home, 'MYAGENTMAIL_API_KEY': 'tk_x'}; "
        "build_server(Settings.load(env=env, overrides={'mode': sys.argv[1]}, platform='linux')); "
        f"heavy = [m for m in {HEAVY_ON_SERVE!r} if m in sys.modules]; "
        f"heavy += [m for m in {ABSENT_IN_LOCAL_MODE!r} if sys.argv[1] == 'local' and m in sys.modules]; "
        f"heavy += [m for m in {ABSENT_IN_HOSTED_MODE!r} if sys.argv[1] == 'hosted' and m in sys.modules]; "
        "print(','.join(heavy))"
    )
    for mode in ("local", "hosted"):
        result = subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "", f"{mode}: heavy modules imported on the serve path: {result.stdout.strip()}"
