"""Goals and README tables from one run of `python -m bench` (bench/results.json).

`goals(results)` lists every goal with its figure, the anchor measured beside it in the same run,
and whether it was met. `render_readme(readme, results, before)` replaces the text between each
`<!-- bench:NAME -->` and `<!-- /bench:NAME -->` marker pair of bench/README.md with the table
built from the run; the prose around the markers is left alone.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

__all__ = ["goals", "render_readme"]

E2E_CALLS = (
    ("list_inboxes", "list_inboxes"),
    ("list_messages", "list_messages (first page)"),
    ("search_rare", "search, rare word"),
    ("search_common", "search, common word"),
    ("get_message", "get_message"),
    ("send_email", "send_email (dry run + bound send; REST: the send alone)"),
    ("wait_existing", "wait_for_email, mail already there"),
    ("wait_arrival_250_to_result", "SMTP 250 -> wait_for_email result"),
)


def _result(results: dict[str, Any], name: str) -> dict[str, Any] | None:
    entry = results.get("benchmarks", {}).get(name) or {}
    result = entry.get("result")
    return result if isinstance(result, dict) else None


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every goal of the benchmarks, from this run: goal, value, anchor (same run), met."""
    out: list[dict[str, Any]] = []

    def add(benchmark: str, goal: str, value: Any, met: bool | None, anchor: str = "") -> None:
        out.append({"benchmark": benchmark, "goal": goal, "value": value, "anchor": anchor, "met": met})

    for mode in ("local", "hosted"):
        if cold := _result(results, f"cold_start_{mode}"):
            add(f"cold_start_{mode}", "cold start <= 1.10x a bare SDK server with the same tool count",
                cold["ratio"], cold["ratio"] <= 1.10,
                f"{_fmt(cold['mam_mcp_median_ms'], 0)} ms vs bare {_fmt(cold['bare_sdk_median_ms'], 0)} ms")  # fmt: skip
    if size := _result(results, "tools_list_size"):
        add("tools_list_size", "default tools/list <= 3,400 o200k tokens",
            size["o200k_tokens"], size["o200k_tokens"] <= 3400,
            f"bare SDK, same tool count: {_fmt(size['bare_sdk_same_count_tokens'])}")  # fmt: skip
    if smtp := _result(results, "smtp_ingest"):
        eight = {name: r.get("8_connections", {}) for name, r in smtp["results"].items()}
        durable = eight.get("durable", {}).get("msgs_per_s")
        maildev = eight.get("maildev", {}).get("msgs_per_s")
        add("smtp_ingest", "durable SMTP ingest >= 500 msgs/s at 8 connections", durable,
            durable is not None and durable >= 500, f"ceiling (bare aiosmtpd) {_fmt(eight.get('ceiling', {}).get('msgs_per_s'), 0)}")
        if maildev is not None:
            add("smtp_ingest", "durable ahead of MailDev at 8 connections", durable,
                durable is not None and durable > maildev, f"MailDev {_fmt(maildev, 0)} msgs/s")
    if large := _result(results, "large_mail"):
        one, many = large["one"], large["concurrent"]
        add("large_mail", f"one {_fmt(one['message_mb'], 0)} MB mail: peak RSS <= base + 3x its size",
            one["growth_x_message"], one["growth_x_message"] <= 3.0,
            f"{_fmt(one['base_mb'])} -> {_fmt(one['peak_mb'])} MB")  # fmt: skip
        add("large_mail", f"{many['messages']} at once: all stored, the excess retried after 451",
            f"peak {_fmt(many['peak_mb'])} MB", True,
            f"{many['refused_451']} x 451, cap {large.get('large_ingest_concurrency')}")  # fmt: skip
    if listing := _result(results, "list_search"):
        for where in ("store", "rest"):
            figures = listing.get(where) or {}
            if "list_newest_20" in figures:
                p50 = figures["list_newest_20"]["p50_ms"]
                add("list_search", f"list newest 20 at 100k ({where}) p50 < 5 ms", p50, p50 < 5)
            for word in ("rare", "medium", "common"):
                if f"search_{word}" in figures:
                    p50 = figures[f"search_{word}"]["p50_ms"]
                    add("list_search", f"search {word} word at 100k ({where}) p50 < 20 ms", p50, p50 < 20)
    if disk := _result(results, "disk_size"):
        add("disk_size", f"on-disk size at {disk['messages']:,} messages <= {_fmt(disk['goal_ratio'], 0)}x their raw size",
            disk["ratio"], disk["met"],
            f"{disk['db_bytes'] + disk['wal_bytes']:,} bytes for {disk['raw_bytes']:,} raw")  # fmt: skip
    if console := _result(results, "console_pages"):
        worst = max(console["results"].items(), key=lambda item: item[1]["server"]["p50_ms"])
        add("console_pages", f"every console call at 100k messages: server time p50 < {_fmt(console['goal_server_ms'], 0)} ms",
            worst[1]["server"]["p50_ms"], console["goal_met"],
            f"slowest: {worst[0]}; worst p99 {_fmt(console['worst_server_p99_ms'], 2)} ms")  # fmt: skip
    if wait := _result(results, "wait_latency"):
        push = wait["push"]["smtp_250_to_result"]
        polling = wait["polling"]["smtp_250_to_result"]["p50_ms"]
        add("wait_latency", "push: SMTP 250 -> result p50 < 25 ms", push["p50_ms"], push["p50_ms"] < 25,
            f"polling at {wait['polling'].get('interval_s')} s: p50 {_fmt(polling)} ms")
        add("wait_latency", "push: SMTP 250 -> result p99 < 100 ms", push["p99_ms"], push["p99_ms"] < 100)
    if e2e := _result(results, "e2e_calls"):
        for verdict in e2e.get("goals", []):
            if "bare_sdk_p50_ms" in verdict:
                anchor = f"{_fmt(verdict['mam_mcp_p50_ms'], 2)} ms vs bare {_fmt(verdict['bare_sdk_p50_ms'], 2)} ms"
            elif "sdk_client_p50_ms" in verdict:
                anchor = f"SDK stdio client: {_fmt(verdict['sdk_client_p50_ms'], 2)} ms"
            else:
                anchor = ""
            add("e2e_calls", verdict["goal"], verdict["value"], verdict["met"], anchor)
    if fixture := _result(results, "pytest_fixture"):
        own = fixture["plugin_own_import_ms"]
        add("pytest_fixture", "pytest run that never asks for mam_inbox: the plugin's own imports < 5 ms", own, own < 5,
            f"{fixture['plugin_modules_imported']} modules; import pytest {_fmt(fixture['import_pytest_ms']['p50'], 0)} ms")  # fmt: skip
        start = fixture["daemon_start_ms"]["p50"]
        add("pytest_fixture", "first mam_inbox of a session (daemon start) p50 < 2,000 ms", start, start < 2000,
            f"then per test: new inbox {_fmt(fixture['new_inbox_ms']['p50'])} ms, "
            f"SMTP -> wait_for_email {_fmt(fixture['mail_round_trip_ms']['p50'])} ms")  # fmt: skip
    if load := _result(results, "http_load"):
        add("http_load", f"{load['sessions']} sessions over streamable HTTP for {_fmt(load['duration_s'], 0)} s: no errors",
            load["errors"], load["met"], f"{_fmt(load['calls'])} calls, p99 {_fmt(load['p99_ms'], 0)} ms")  # fmt: skip
        if slow := load.get("slow_sockets"):
            add("http_load", "every slow socket closed by the read timeout", slow["closed_by_server"],
                slow["closed_by_server"] == slow["opened"], f"of {_fmt(slow['opened'])}")
    return out


# --- tables ---------------------------------------------------------------------------------------


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(cell) if not isinstance(cell, str) else cell for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _summary(results: dict[str, Any], _: dict[str, Any] | None) -> str:
    run = results["run"]
    load = run.get("load_average", {})
    lines = [
        f"Run: `{run['command']}` on {run['date']} (commit {run['commit']}), {run['seconds']:.0f} s in all.",
        f"Machine: {run['machine']['cpus']} CPUs, Python {run['machine']['python']}, {run['machine']['platform']};"
        f" load average {load.get('before', ['?'])[0]} at the start, {load.get('after', ['?'])[0]} at the end"
        " (other work shares this machine: compare figures within a row, measured side by side).",
        "",
        "",
    ]
    earlier = sorted({e["date"] for e in results.get("benchmarks", {}).values() if e.get("date") and e["date"] != run["date"]})
    if earlier:  # a partial run kept the other benchmarks' results
        lines[1] += f" Rows of benchmarks this run left out come from earlier runs ({', '.join(earlier)})."
    rows = [[g["benchmark"], g["goal"], _fmt(g["value"], 2) if isinstance(g["value"], float) else g["value"],
             g["anchor"] or "", "**met**" if g["met"] else "**not met**"] for g in results.get("goals", [])]  # fmt: skip
    met = sum(1 for g in results.get("goals", []) if g["met"])
    lines.insert(2, f"{met} of {len(results.get('goals', []))} goals met.")
    failed = [f"`{name}` failed: {entry.get('error', '')[:200]}" for name, entry in results["benchmarks"].items() if "error" in entry]
    return "\n".join(lines) + _table(["benchmark", "goal", "this run", "anchor, same run", ""], rows) + (
        "\n\n" + "\n".join(failed) if failed else ""
    )


def _cell(figures: dict[str, Any], target: str, key: str = "p50_ms") -> Any:
    return (figures.get(target) or {}).get(key)


def _e2e(results: dict[str, Any], _: dict[str, Any] | None) -> str:
    e2e = _result(results, "e2e_calls")
    if e2e is None:
        return "_not run_"
    parts = []
    for size, data in e2e["sizes"].items():
        rows = []
        for key, label in E2E_CALLS:
            figures = data["calls"].get(key)
            if figures is None:
                continue
            rows.append([
                label,
                f"{_fmt(_cell(figures, 'mam_mcp_pipe'), 2)} / {_fmt(_cell(figures, 'mam_mcp_pipe', 'p99_ms'), 1)}",
                f"{_fmt(_cell(figures, 'bare_sdk_pipe'), 2)} / {_fmt(_cell(figures, 'bare_sdk_pipe', 'p99_ms'), 1)}",
                f"**{_fmt(figures.get('ratio_vs_bare_sdk_pipe'), 2)}**",
                f"{_fmt(_cell(figures, 'mam_mcp'), 2)} / {_fmt(_cell(figures, 'bare_sdk'), 2)}",
                f"**{_fmt(figures.get('ratio_vs_bare_sdk'), 2)}**",
                _fmt(_cell(figures, "rest"), 2),
                _fmt(_cell(figures, "rest_new_connection"), 2),
                f"{_fmt(_cell(figures, 'mam_mcp_pipe', 'server_cpu_ms_per_call'), 2)} / "
                f"{_fmt(_cell(figures, 'bare_sdk_pipe', 'server_cpu_ms_per_call'), 2)}",
            ])  # fmt: skip
        header = [
            f"{int(size):,} message(s)", "mam-mcp p50 / p99 ms (pipe host)", "bare SDK p50 / p99 ms (pipe host)",
            "ratio", "mam-mcp / bare p50 ms (SDK client)", "ratio", "REST kept-alive p50", "REST new conn. p50",
            "server CPU ms/call mam-mcp / bare",
        ]  # fmt: skip
        parts.append(_table(header, rows))
    return "\n\n".join(parts)


def _e2e_before_after(results: dict[str, Any], before: dict[str, Any] | None) -> str:
    e2e = _result(results, "e2e_calls")
    if e2e is None or before is None:
        return "_not run_"
    rows = []
    for size in e2e["sizes"]:
        for key, label in E2E_CALLS:
            old = before.get("sizes", {}).get(size, {}).get("calls", {}).get(key)
            new = e2e["sizes"][size]["calls"].get(key)
            if old is None or new is None:
                continue
            rows.append([
                f"{label} at {int(size):,}",
                f"{_fmt(_cell(old, 'mam_mcp'), 1)} / {_fmt(_cell(old, 'mam_mcp', 'p99_ms'), 1)}",
                f"**{_fmt(_cell(new, 'mam_mcp'), 1)} / {_fmt(_cell(new, 'mam_mcp', 'p99_ms'), 1)}**",
                f"{_fmt(_cell(old, 'bare_sdk'), 1)} → {_fmt(_cell(new, 'bare_sdk'), 1)}",
                f"{_fmt(_cell(old, 'rest'), 1)} / {_fmt(_cell(old, 'rest', 'p99_ms'), 1)} → "
                f"{_fmt(_cell(new, 'rest'), 1)} / {_fmt(_cell(new, 'rest', 'p99_ms'), 1)}",
                f"{_fmt(old.get('ratio_vs_bare_sdk'), 2)} → {_fmt(new.get('ratio_vs_bare_sdk'), 2)}",
            ])  # fmt: skip
    header = ["call", "before: mam-mcp p50 / p99 ms", "after: mam-mcp p50 / p99 ms", "bare SDK p50 ms",
              "REST kept-alive p50 / p99 ms", "ratio to bare SDK"]  # fmt: skip
    provenance = before.get("provenance", {})
    note = (f"Before: {provenance.get('what', '')}; `{provenance.get('command', '')}`, {provenance.get('date', '')}. "
            "After: this run. Both through the SDK's stdio client (the host the before run had).")  # fmt: skip
    return note + "\n\n" + _table(header, rows)


def _cold(results: dict[str, Any], _: dict[str, Any] | None) -> str:
    rows = []
    for mode in ("local", "hosted"):
        cold = _result(results, f"cold_start_{mode}")
        if cold is None:
            continue
        cpu = cold.get("server_cpu") or {}
        own = cold.get("own_modules_import") or {}
        rows.append([mode, cold["tools"], _fmt(cold["mam_mcp_median_ms"], 0), _fmt(cold["bare_sdk_median_ms"], 0),
                     f"**{cold['ratio']:.3f}**", f"{_fmt(cpu.get('mam_mcp_median_ms'))} / {_fmt(cpu.get('bare_sdk_median_ms'))}",
                     _fmt(cpu.get("ratio"), 3), _fmt(own.get("total_ms")), "met" if cold["met"] else "not met"])  # fmt: skip
    header = ["mode", "tools", "mam-mcp p50 ms", "bare SDK p50 ms", "ratio", "CPU ms mam-mcp / bare",
              "CPU ratio", "own modules' import ms", "goal <= 1.10"]  # fmt: skip
    return _table(header, rows) if rows else "_not run_"


def _tools_list(results: dict[str, Any], _: dict[str, Any] | None) -> str:
    rows = []
    for name, label in (("tools_list_size", "default"), ("tools_list_size_all", "all toolsets")):
        size = _result(results, name)
        if size is not None:
            rows.append([label, size["tools"], size["chars"], f"**{size['o200k_tokens']:,}**", size["tokens_per_tool"],
                         size["bare_sdk_same_count_tokens"]])  # fmt: skip
    header = ["selection", "tools", "chars", "o200k tokens", "per tool", "bare SDK, same count"]
    return _table(header, rows) if rows else "_not run_"


def _smtp(results: dict[str, Any], _: dict[str, Any] | None) -> str:
    smtp = _result(results, "smtp_ingest")
    if smtp is None:
        return "_not run_"
    rows = []
    for name, by_connections in smtp["results"].items():
        for connections, figures in by_connections.items():
            rounds = " / ".join(_fmt(r["msgs_per_s"], 0) for r in figures["rounds"])
            rows.append([name, connections.split("_")[0], f"**{_fmt(figures['msgs_per_s'], 0)}**", rounds,
                         _fmt(figures["p50_ms"]), _fmt(figures["p99_ms"]), _fmt(figures["server_cpu_ms_per_msg"], 2)])  # fmt: skip
    versions = smtp.get("maildev_version") or {}
    note = f"MailDev {versions.get('maildev', '?')} on Node.js {versions.get('node', '?')}; {smtp['message_bytes']:,}-byte messages, {smtp['rounds']} rounds.\n\n"
    header = ["target", "connections", "msgs/s (median)", "rounds", "p50 ms", "p99 ms", "server CPU ms/msg"]
    return note + _table(header, rows)


def _large(results: dict[str, Any], _: dict[str, Any] | None) -> str:
    large = _result(results, "large_mail")
    if large is None:
        return "_not run_"
    rows = [[phase["messages"], _fmt(phase["message_mb"]), _fmt(phase["base_mb"]), f"**{_fmt(phase['peak_mb'])}**",
             _fmt(phase["growth_mb"]), f"{_fmt(phase['growth_x_message'], 2)}x", phase["refused_451"],
             _fmt(phase["seconds"])] for phase in (large["one"], large["concurrent"])]  # fmt: skip
    note = (f"Cap: {large.get('large_ingest_concurrency')} large ingests at once, large = over "
            f"{_fmt((large.get('large_message_bytes') or 0) / 2**20)} MiB; peak from {large['one']['peak_from']}.\n\n")
    header = ["messages at once", "each MB", "base RSS MB", "peak RSS MB", "growth MB", "growth / message",
              "451 answers (retried)", "seconds"]  # fmt: skip
    return note + _table(header, rows)


def _list_search(results: dict[str, Any], _: dict[str, Any] | None) -> str:
    listing = _result(results, "list_search")
    if listing is None:
        return "_not run_"
    rows = []
    for key, label in (("list_newest_20", "list newest 20"), ("search_rare", "search rare"),
                       ("search_medium", "search medium"), ("search_common", "search common")):  # fmt: skip
        store, rest = listing["store"].get(key, {}), (listing.get("rest") or {}).get(key, {})
        rows.append([label, _fmt(store.get("p50_ms"), 2), _fmt(store.get("p99_ms"), 2), _fmt(rest.get("p50_ms"), 2),
                     _fmt(rest.get("p99_ms"), 2)])  # fmt: skip
    fill = listing.get("fill_seconds")
    note = (f"{listing['messages']:,} messages, database {listing['db_bytes'] / 1e6:,.0f} MB, filled in {fill} s"
            f" ({_fmt(listing.get('fill_msgs_per_s'))} msgs/s).\n\n")  # fmt: skip
    return note + _table(["call", "store p50 ms", "store p99 ms", "REST (in process) p50 ms", "REST p99 ms"], rows)


def _disk(results: dict[str, Any], _: dict[str, Any] | None) -> str:
    disk = _result(results, "disk_size")
    if disk is None:
        return "_not run_"
    note = (f"{disk['messages']:,} messages of {disk['mail']}'s mail ({disk['mean_message_bytes']:,} bytes each),"
            f" SQLite {disk['machine']['sqlite']}; database + WAL after a checkpoint.\n\n")  # fmt: skip
    rows = [["raw mail", _fmt(disk["raw_bytes"]), "1.00"],
            ["database + WAL", _fmt(disk["db_bytes"] + disk["wal_bytes"]), f"**{disk['ratio']:.2f}**"]]  # fmt: skip
    rows += [[f"of which `{name}`", _fmt(size), f"{size / disk['raw_bytes']:.2f}"]
             for name, size in list(disk.get("by_table", {}).items())[:8]]  # fmt: skip
    return note + _table(["what", "bytes", "x raw"], rows)


def _wait(results: dict[str, Any], _: dict[str, Any] | None) -> str:
    wait = _result(results, "wait_latency")
    if wait is None:
        return "_not run_"
    rows = []
    for path, label in (("push", "push (WebSocket)"), ("polling", f"polling, {wait['polling'].get('interval_s')} s")):
        after, send = wait[path]["smtp_250_to_result"], wait[path]["smtp_send_to_result"]
        rows.append([label, after["count"], f"**{_fmt(after['p50_ms'])}**", _fmt(after["p90_ms"]), _fmt(after["p99_ms"]),
                     _fmt(after["max_ms"]), _fmt(send["p50_ms"]), _fmt(send["p99_ms"])])  # fmt: skip
    header = ["path", "messages", "250 -> result p50 ms", "p90", "p99", "max", "send -> result p50 ms", "p99"]
    return _table(header, rows)


def _load(results: dict[str, Any], _: dict[str, Any] | None) -> str:
    load = _result(results, "http_load")
    if load is None:
        return "_not run_"
    rss = load.get("server_rss_mb") or {}
    slow = load.get("slow_sockets") or {}
    rows = [[load["sessions"], _fmt(load["duration_s"], 0), load["calls"], _fmt(load["calls_per_s"]), _fmt(load["p50_ms"], 0),
             _fmt(load["p99_ms"], 0), _fmt(load["max_ms"], 0), f"**{load['errors']}**", _fmt(load.get("server_cpu_ms_per_call"), 2),
             f"{_fmt(rss.get('before_sessions'))} → {_fmt(rss.get('sessions_open'))} → {_fmt(rss.get('after_load'))}",
             f"{_fmt(slow.get('closed_by_server'))} of {_fmt(slow.get('opened'))} in {_fmt(slow.get('all_closed_after_s'))} s"]]  # fmt: skip
    header = ["sessions", "seconds", "calls", "calls/s", "p50 ms", "p99 ms", "max ms", "errors", "server CPU ms/call",
              "server RSS MB: idle → sessions open → after", "slow sockets closed (read timeout 5 s)"]  # fmt: skip
    return _table(header, rows)


RENDERERS: dict[str, Callable[[dict[str, Any], dict[str, Any] | None], str]] = {
    "summary": _summary,
    "e2e": _e2e,
    "e2e-before-after": _e2e_before_after,
    "cold-start": _cold,
    "tools-list": _tools_list,
    "smtp": _smtp,
    "large-mail": _large,
    "list-search": _list_search,
    "disk-size": _disk,
    "wait": _wait,
    "http-load": _load,
}


def render_readme(readme: str, results: dict[str, Any], before: dict[str, Any] | None) -> str:
    """`readme` with every marked block regenerated from `results` (blocks of benchmarks not run are kept)."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        renderer = RENDERERS.get(name)
        if renderer is None:
            return match.group(0)
        body = renderer(results, before)
        if body == "_not run_" and name != "summary":
            return match.group(0)  # keep the last run's table for a benchmark skipped this time
        return f"<!-- bench:{name} -->\n{body}\n<!-- /bench:{name} -->"

    return re.sub(r"<!-- bench:([a-z0-9-]+) -->.*?<!-- /bench:\1 -->", replace, readme, flags=re.DOTALL)
