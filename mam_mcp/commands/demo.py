"""`mam-mcp demo`: the newcomer's first command — a real round trip on the embedded backend.

Starts (or reuses) the local mail backend, connects an MCP client to `mam-mcp serve` over
stdio exactly as a host would, creates an inbox, sends it a mail over SMTP as an outside
sender would, waits for it and reads it with the tools, replies, and prints each step.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
from typing import Any, TextIO

from mam_mcp.commands import bounded_number, closed_stdout, error_leaves
from mam_mcp.config import Settings

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print each step's structured result as JSON lines")
    parser.add_argument("--timeout", type=bounded_number(1, 600, integer=True), default=30,
                        help="seconds to wait for the demo mail (1-600, default 30)")


class _Printer:
    def __init__(self, out: TextIO, as_json: bool) -> None:
        self.out, self.as_json, self.step = out, as_json, 0

    def __call__(self, title: str, detail: str = "", data: Any = None) -> None:
        self.step += 1
        if self.as_json:
            self.out.write(json.dumps({"step": self.step, "title": title, "detail": detail, "data": data}) + "\n")
        else:
            self.out.write(f"\n[{self.step}] {title}\n")
            for line in detail.splitlines():
                self.out.write(f"    {line}\n")
        self.out.flush()


def _tool_data(result: Any, name: str) -> dict[str, Any]:
    if result.is_error:
        raise RuntimeError(f"{name} failed: {result.content[0].text}")
    return dict(result.structured_content or {})


def _send_over_smtp(port: int, sender: str, recipient: str, code: str) -> None:
    import smtplib
    from email.message import EmailMessage

    message = EmailMessage()
    message["From"] = f"Demo Service <{sender}>"
    message["To"] = recipient
    message["Subject"] = "Confirm your email for Demo Service"
    message.set_content(
        f"Hi!\n\nYour verification code is {code}.\n\nOr confirm with this link:\n"
        f"https://demo.example/verify?token={code}abc\n\nThanks,\nThe Demo team\n"
    )
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.send_message(message)


async def _demo(settings: Settings, args: argparse.Namespace, say: _Printer) -> None:
    import anyio
    from mcp import Client, StdioServerParameters

    from mam_mcp.local.daemon.launcher import ensure_daemon

    config = settings.local_config()
    handle = await ensure_daemon(config)
    say(
        "Local mail backend " + ("started" if handle.started else "already running"),
        f"REST + WebSocket: {handle.base_url}\nSMTP:             127.0.0.1:{handle.smtp_port}\n"
        f"Data:             {config.data_dir}",
    )

    env = {
        "MAM_MCP_MODE": "local",
        "MAM_LOCAL_DATA_DIR": str(config.data_dir),
        "MAM_LOCAL_HTTP_PORT": str(config.http_port),
        "MAM_LOCAL_SMTP_PORT": str(config.smtp_port),
        "MAM_LOCAL_DOMAIN": config.domain,
    }
    import os

    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("MYAGENTMAIL_", "MAM_"))} | env
    params = StdioServerParameters(command=sys.executable, args=["-m", "mam_mcp.cli", "serve"], env=child_env)
    async with Client(params, read_timeout_seconds=args.timeout + 30) as client:
        tools = [t.name for t in (await client.list_tools()).tools]
        say("Connected an MCP client to `mam-mcp serve` over stdio", f"{len(tools)} tools: {', '.join(tools)}")

        inbox = _tool_data(
            await client.call_tool("create_inbox", {"username": f"demo-{secrets.token_hex(3)}", "display_name": "Demo Agent"}),
            "create_inbox",
        )
        say("create_inbox", f"id {inbox['id']}\naddress {inbox['email']}", inbox)

        code = f"{secrets.randbelow(900000) + 100000}"
        await anyio.to_thread.run_sync(_send_over_smtp, handle.smtp_port, "noreply@demo.example", inbox["email"], code)
        say("An outside sender mailed the inbox over SMTP", f"from noreply@demo.example to {inbox['email']} (code {code})")

        if "wait_for_email" in tools:
            waited = _tool_data(
                await client.call_tool(
                    "wait_for_email",
                    {"inbox_id": inbox["id"], "from_contains": "demo.example", "timeout_seconds": int(args.timeout)},
                ),
                "wait_for_email",
            )
            if not waited.get("found"):
                raise RuntimeError("the demo mail did not arrive in time")
            message_id = waited["message"]["id"] if "message" in waited else waited["id"]
            say("wait_for_email caught it", f"code: {waited.get('code')}\nlinks: {', '.join(waited.get('links') or [])}", waited)
        else:
            listed = _tool_data(await client.call_tool("list_messages", {"inbox_id": inbox["id"]}), "list_messages")
            if not listed["messages"]:
                raise RuntimeError("the demo mail is not in the inbox")
            message_id = listed["messages"][0]["id"]
            say("list_messages found it", f"{listed['count']} message(s)", listed)

        message = _tool_data(
            await client.call_tool("get_message", {"inbox_id": inbox["id"], "message_id": message_id}), "get_message"
        )
        say("get_message", f"From: {message['from']}\nSubject: {message['subject']}\n\n{message['body']['text']}", message)

        reply = _tool_data(
            await client.call_tool(
                "reply_to_email",
                {"inbox_id": inbox["id"], "message_id": message_id, "body": "Thanks, verified!"},
            ),
            "reply_to_email",
        )
        outcome = (
            "captured locally (no relay configured: mail to outside domains is kept, not sent)"
            if reply.get("status") == "captured"
            else f"status {reply.get('status')}"
        )
        say("reply_to_email (in-thread)", f"message {reply['id']} in thread {reply['thread_id']}: {outcome}", reply)

    say(
        "Done — your agent has a working inbox",
        "Add it to your MCP hosts:  mam-mcp install   (every host found here; --host NAME for one; --dry-run to preview)\n"
        f"Point an app's SMTP at 127.0.0.1:{handle.smtp_port} to send it mail; watch events with `mam-mcp tail`.\n"
        "The backend keeps running in the background and stops by itself after 30 idle minutes;\n"
        "`mam-mcp local status` shows it, `mam-mcp local stop` stops it now.",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    import anyio

    say = _Printer(sys.stdout, args.json)
    if settings.mode != "local":
        print("note: the demo runs on the embedded local backend; your API key is not used.", file=sys.stderr)
    try:
        anyio.run(_demo, settings, args, say)
    except Exception as error:  # a demo failure must read as a sentence, not a traceback
        if closed_stdout(error):
            raise  # `mam-mcp demo | head -1`: the reader went away; the command line handles that
        print(f"\nmam-mcp demo failed: {next(error_leaves(error))}", file=sys.stderr)
        print("Run `mam-mcp doctor` for a diagnosis; the backend log is in the data dir (daemon.log).", file=sys.stderr)
        return 1
    return 0
