"""`mam-mcp doctor [--json]`: is this set-up healthy, and if not, what to do about it.

Checks: mode and why; the key's scope and first characters (never the key); API reachability
and latency; the WebSocket event stream; in local mode the backend daemon and the SMTP port;
in hosted mode LinkedIn sessions and their utilization; each MCP host's config found and
pointing at this install. Exits 1 when any check failed; each failure carries a `fix`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from mam_mcp.config import Settings

__all__ = ["Check", "DoctorReport", "add_arguments", "diagnose", "render_text", "run"]

Status = Literal["ok", "warn", "fail", "skip"]
_TIMEOUT = 10.0


class Check(BaseModel):
    name: str
    status: Status
    detail: str
    fix: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class DoctorReport(BaseModel):
    ok: bool
    mode: str
    checks: list[Check]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", dest="as_json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace, settings: Settings) -> int:
    import anyio

    report = anyio.run(lambda: diagnose(settings, env=os.environ, platform=sys.platform, project_dir=Path.cwd()))
    print(report.model_dump_json(indent=2) if args.as_json else render_text(report))
    return 0 if report.ok else 1


def render_text(report: DoctorReport) -> str:
    marks = {"ok": "[ok]  ", "warn": "[warn]", "fail": "[FAIL]", "skip": "[skip]"}
    lines = []
    for check in report.checks:
        lines.append(f"{marks[check.status]} {check.name}: {check.detail}")
        if check.fix and check.status in ("fail", "warn"):
            lines.append(f"       fix: {check.fix}")
    warnings = sum(check.status == "warn" for check in report.checks)
    if not report.ok:
        lines.append("some checks failed (see the fix: lines)")
    elif warnings:
        lines.append(f"nothing failed; {warnings} warning{'s' if warnings > 1 else ''} (see the fix: lines)")
    else:
        lines.append("all good")
    return "\n".join(lines)


async def diagnose(
    settings: Settings,
    *,
    env: Mapping[str, str],
    platform: str,
    project_dir: Path,
    client_factory: Any = None,
    command: str | None = None,
) -> DoctorReport:
    """Run every check. `client_factory` (tests) gives the API client; by default hosted mode builds one
    from the settings and local mode uses the daemon if it is running (doctor never starts it)."""
    broken = settings.mode_reason.startswith("configuration problem")
    checks = [Check(name="mode", status="fail" if broken else "ok", detail=f"{settings.mode} ({settings.mode_reason})",
                    fix="run `mam-mcp login`, or unset MAM_MCP_MODE to use the local backend" if broken else None,
                    data={"mode": settings.mode})]
    checks.extend(_send_safety_checks(settings))
    client = None
    if settings.mode == "hosted":
        checks.append(_key_check(settings))
        client = await _hosted_client(settings, client_factory)
    else:
        local_checks, client = await _local_checks(settings, client_factory)
        checks.extend(local_checks)
    try:
        if client is not None:
            api = await _api_check(client, settings)
            checks.append(api)
            if api.status == "ok":
                checks.append(await _websocket_check(client))
                if settings.mode == "hosted":
                    checks.append(await _linkedin_check(client))
        if settings.mode == "local":
            checks.append(Check(name="linkedin", status="skip", detail="LinkedIn needs the hosted API",
                                fix="set an API key (`mam-mcp login`) to use the LinkedIn tools"))
    finally:
        if client is not None:
            await client.aclose()
    checks.extend(_host_checks(env=env, platform=platform, project_dir=project_dir, command=command))
    return DoctorReport(ok=all(c.status != "fail" for c in checks), mode=settings.mode, checks=checks)


_CONFIRM_MEANING = {
    "new-recipients": "asks the person before mail goes to someone who never wrote to the inbox",
    "all": "asks the person before every send; a host that cannot ask gets drafts to approve",
    "off": "never asks (the verified rule still holds)",
}


def _send_safety_checks(settings: Settings) -> list[Check]:
    """What the person running mam-mcp set about sending, and where each setting came from."""
    sources = settings.setting_sources

    def source(*names: str) -> str:
        found = [f"{n} from {sources[n]}" for n in names if n in sources]
        return f" ({'; '.join(found)})" if found else " (default)"

    consent = Check(
        name="send_consent",
        status="ok",
        detail=f"{settings.confirm_sends}: {_CONFIRM_MEANING[settings.confirm_sends]}; unanswered after "
        f"{settings.confirm_timeout:g} s sends nothing" + source("confirm_sends", "confirm_timeout"),
        data={"confirm_sends": settings.confirm_sends, "confirm_timeout": settings.confirm_timeout},
    )
    policy = settings.outbound
    rules = Check(
        name="outbound_policy",
        status="ok",
        detail="; ".join(policy.describe()) + source("allow", "block", "max_recipients", "sends_per_hour", "reply_only"),
        data={**policy.model_dump(mode="json"), "config_file": str(settings.config_file) if settings.config_file else None},
    )
    return [consent, rules]


def _key_check(settings: Settings) -> Check:
    from mam_mcp.commands.login import describe_key

    assert settings.api_key is not None
    info = describe_key(settings.api_key.get_secret_value())
    source = settings.mode_reason.removeprefix("API key from ")
    detail = f"{info.scope} key {info.prefix} from {source}"
    if info.scope == "unknown":
        return Check(name="api_key", status="warn", detail=detail + " (not a tk_/wk_/ak_ key)",
                     fix="check the key: MyAgentMail keys start with tk_, wk_ or ak_",
                     data={"prefix": info.prefix, "scope": info.scope})
    return Check(name="api_key", status="ok", detail=detail, data={"prefix": info.prefix, "scope": info.scope})


async def _hosted_client(settings: Settings, client_factory: Any) -> Any:
    if client_factory is not None:
        return await client_factory(settings)
    from mam_mcp.client import MamClient

    assert settings.api_key is not None
    return MamClient(base_url=settings.base_url, api_key=settings.api_key.get_secret_value(), timeout=_TIMEOUT)


async def _local_checks(settings: Settings, client_factory: Any) -> tuple[list[Check], Any]:
    from mam_mcp.local.daemon.launcher import probe_daemon

    config = settings.local_config()
    probe = await probe_daemon(config)
    checks: list[Check] = []
    client = None
    port_fix = "set MAM_LOCAL_HTTP_PORT to a free port (or stop the program using it)"
    if probe.kind == "none":
        checks.append(Check(name="local_daemon", status="ok",
                            detail=f"not running (it starts on the first tool call; data dir {config.data_dir})",
                            data={"running": False}))
        checks.append(_smtp_free_check(config.host, config.smtp_port))
    elif probe.kind == "foreign":
        checks.append(Check(name="local_daemon", status="fail",
                            detail=f"port {probe.port} on {config.host} is used by another program", fix=port_fix))
    elif not probe.owned:
        checks.append(Check(name="local_daemon", status="fail",
                            detail=f"port {probe.port} is served by a mam-mcp daemon of another data dir",
                            fix=port_fix + ", or use that daemon's data dir (MAM_LOCAL_DATA_DIR)"))
    else:
        health = probe.health or {}
        version = health.get("version")
        current = probe.current
        checks.append(Check(
            name="local_daemon", status="ok" if current else "warn",
            detail=f"running on {config.host}:{probe.port} (version {version})",
            fix=None if current else "an older daemon: it is replaced on the next tool call (or run `mam-mcp local`)",
            data={"running": True, "port": probe.port, "version": version},
        ))
        reported = health.get("smtpPort")
        smtp_port = reported if isinstance(reported, int) else config.smtp_port
        checks.append(await _smtp_banner_check(config.host, smtp_port))
        if client_factory is not None:
            client = await client_factory(settings)
        else:
            from mam_mcp.client import MamClient

            try:
                key = config.key_path.read_text(encoding="utf-8").strip()
            except OSError as error:
                checks.append(Check(name="api", status="fail", detail=f"cannot read {config.key_path}: "
                                    f"{error.strerror}", fix="check the data dir's permissions"))
                return checks, None
            client = MamClient(base_url=f"http://{config.host}:{probe.port}", api_key=key, timeout=_TIMEOUT)
    return checks, client


def _smtp_free_check(host: str, port: int) -> Check:
    """Before the daemon runs, its SMTP port must be free for it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return Check(name="smtp_port", status="fail", detail=f"{host}:{port} is in use by another program",
                         fix="set MAM_LOCAL_SMTP_PORT to a free port (or stop the program using it)",
                         data={"port": port})
    return Check(name="smtp_port", status="ok", detail=f"{host}:{port} is free for the local backend",
                 data={"port": port})


async def _smtp_banner_check(host: str, port: int) -> Check:
    import anyio

    try:
        with anyio.fail_after(5):
            async with await anyio.connect_tcp(host, port) as stream:
                banner = (await stream.receive(512)).decode("ascii", "replace")
                await stream.send(b"QUIT\r\n")
    except (OSError, TimeoutError, anyio.EndOfStream) as error:
        return Check(name="smtp_port", status="fail", detail=f"no SMTP answer on {host}:{port} ({type(error).__name__})",
                     fix="restart the backend: `mam-mcp local` (its log is in the data dir)", data={"port": port})
    if not banner.startswith("220"):
        return Check(name="smtp_port", status="fail", detail=f"{host}:{port} answers, but not as an SMTP server",
                     fix="set MAM_LOCAL_SMTP_PORT to a free port", data={"port": port})
    return Check(name="smtp_port", status="ok", detail=f"SMTP answering on {host}:{port}", data={"port": port})


async def _api_check(client: Any, settings: Settings) -> Check:
    from mam_mcp.client.errors import AuthError, AuthForbidden, ConnectionFailed, MamError

    started = time.perf_counter()
    try:
        listed = await client.inboxes.list()
    except AuthError as error:
        return Check(name="api", status="fail", detail=f"the API refused the key ({error.code})",
                     fix="run `mam-mcp login` with a valid key (or fix MYAGENTMAIL_API_KEY)")
    except AuthForbidden as error:
        return Check(name="api", status="fail", detail=f"the key may not list inboxes ({error.code})",
                     fix="use a tenant (tk_) or workspace (wk_) key, or an inbox key of an existing inbox")
    except ConnectionFailed as error:
        where = client.http.base_url
        return Check(name="api", status="fail", detail=f"cannot reach {where}: {error.message}",
                     fix="check the network and MYAGENTMAIL_BASE_URL" if settings.mode == "hosted"
                     else "restart the backend: `mam-mcp local`")
    except MamError as error:
        return Check(name="api", status="fail", detail=f"{error.code}: {error.message}", fix=error.hint)
    latency = round((time.perf_counter() - started) * 1000)
    count = len(listed.inboxes)
    return Check(name="api", status="ok", detail=f"{client.http.base_url} answered in {latency} ms ({count} inbox{'' if count == 1 else 'es'})",
                 data={"latency_ms": latency, "inboxes": count, "base_url": client.http.base_url})


async def _websocket_check(client: Any) -> Check:
    import anyio

    from mam_mcp.client.event_stream import MAX_EVENT_BYTES

    http = client.http.async_client  # the socket shares the API client's auth header and transport
    url = str(http.base_url).rstrip("/") + "/ws"
    started = time.perf_counter()
    fix = "events fall back to polling (slower wait_for_email); allow WebSocket upgrades to the API"
    try:
        with anyio.fail_after(_TIMEOUT):
            async with http.websocket(url, max_message_size_bytes=MAX_EVENT_BYTES, timeout=_TIMEOUT) as ws:
                await ws.send_text(json.dumps({"type": "subscribe"}))
                for _ in range(10):  # `connected` comes first, then `subscribed`
                    frame = json.loads(await ws.receive_text())
                    if frame.get("type") in ("subscribed", "error"):
                        break
    except Exception as error:  # noqa: BLE001  # any failure here means the same to the user: no live events
        return Check(name="websocket", status="warn", detail=f"could not open {url} ({type(error).__name__})", fix=fix)
    latency = round((time.perf_counter() - started) * 1000)
    if frame.get("type") != "subscribed":
        return Check(name="websocket", status="warn", detail=f"subscription refused: {str(frame.get('message'))[:200]}",
                     fix=fix)
    return Check(name="websocket", status="ok", detail=f"event stream subscribed in {latency} ms",
                 data={"latency_ms": latency})


async def _linkedin_check(client: Any) -> Check:
    from mam_mcp.client.errors import AuthForbidden, MamError

    try:
        sessions = await client.linkedin.sessions.list()
        usage = await client.linkedin.sessions.utilization() if sessions else None
    except AuthForbidden:
        return Check(name="linkedin", status="skip", detail="this key's scope cannot use LinkedIn",
                     fix="use a tenant (tk_) key for the LinkedIn tools")
    except MamError as error:
        return Check(name="linkedin", status="fail", detail=f"{error.code}: {error.message}", fix=error.hint)
    if not sessions:
        return Check(name="linkedin", status="warn", detail="no LinkedIn account connected",
                     fix="connect one: `mam-mcp linkedin connect` or the MyAgentMail dashboard",
                     data={"sessions": 0})
    parts, limited = [], []
    for item in usage.sessions if usage else []:
        remaining = ", ".join(f"{k} {v}" for k, v in sorted(item.remaining.items())) or "n/a"
        parts.append(f"{item.label or item.session_id}: {item.status or '?'}, remaining {remaining}")
        if item.rate_limited_until:
            limited.append(f"{item.label or item.session_id} until {item.rate_limited_until}")
    connected = sum(1 for s in sessions if (s.status or "").lower() in ("connected", "active", "ok"))
    detail = f"{len(sessions)} session(s), {connected} connected; " + ("; ".join(parts) or "no utilization data")
    data = {"sessions": len(sessions), "connected": connected,
            "utilization": [u.model_dump(mode="json") for u in (usage.sessions if usage else [])]}
    if limited:
        return Check(name="linkedin", status="warn", detail=detail + f"; rate limited: {', '.join(limited)}",
                     fix="wait for the pause to end, or connect another LinkedIn account to spread the load",
                     data=data)
    return Check(name="linkedin", status="ok", detail=detail, data=data)


def _host_checks(*, env: Mapping[str, str], platform: str, project_dir: Path, command: str | None) -> list[Check]:
    from mam_mcp.commands.install import InstallError, host_config_paths, installed_command, read_entry

    try:
        ours = command or installed_command()
    except InstallError:
        ours = None
    checks: list[Check] = []
    configured = 0
    for host, scope, path in host_config_paths(env=env, platform=platform, project_dir=project_dir):
        name = f"host:{host}" + (" (project)" if scope == "project" else "")
        flag = f"--host {host}" + (" --scope project" if scope == "project" else "")
        if not path.exists():
            continue
        entry = read_entry(path)
        if entry is None:
            checks.append(Check(name=name, status="warn", detail=f"{path} has no myagentmail server",
                                fix=f"run `mam-mcp install {flag}`", data={"path": str(path)}))
            continue
        configured += 1
        target = str(entry.get("command") or entry.get("url") or "")
        if target and Path(target).name == target and Path(target).name not in ("uvx", "pipx", "uv"):
            # A bare name (a project file shared with the team): the host looks it up on PATH.
            found = shutil.which(target, path=env.get("PATH") or "")
            checks.append(Check(
                name=name, status="ok" if found else "warn",
                detail=f"{path} runs {target} from PATH" + (f" ({found})" if found else ", and it is not on PATH here"),
                fix=None if found else "install mam-mcp so that it is on PATH: `pipx install mam-mcp` (the "
                "published package) or `pipx install .` in a checkout", data={"path": str(path)}))
        elif _same_command(target, ours) or Path(target).name in ("uvx", "pipx", "uv"):
            checks.append(Check(name=name, status="ok", detail=f"{path} runs {target}", data={"path": str(path)}))
        else:
            checks.append(Check(name=name, status="fail",
                                detail=f"{path} runs {target or '(nothing)'}, not this install ({ours})",
                                fix=f"run `mam-mcp install {flag}` to point it here", data={"path": str(path)}))
    if not configured:
        checks.append(Check(name="hosts", status="warn", detail="no MCP host is configured to run mam-mcp",
                            fix="run `mam-mcp install` (or `mam-mcp install --host claude-code`)"))
    return checks


def _same_command(target: str, ours: str | None) -> bool:
    if not target or ours is None:
        return False
    if target == ours:
        return True
    try:
        return os.path.samefile(target, ours)
    except OSError:
        return False
