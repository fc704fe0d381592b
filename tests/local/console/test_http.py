"""The console over HTTP: the one-time sign-in link and its cookie, CSRF and Origin/Host refusals,
keyset paging and capped counts, the locked-down HTML view, downloads, and draft approval bound
to the revision shown. Real backend and SQLite; the console mounted as the daemon mounts it."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import anyio
import httpx2
import pytest_asyncio
from starlette.routing import Mount

from mam_mcp.local.api.app import create_app
from mam_mcp.local.console import CONSOLE_PATH, Console
from mam_mcp.local.events.hub import EventHub
from tests.asgi_server import serve_asgi
from tests.local.conftest import LocalBackendFixture

BASE = "http://127.0.0.1:8725"
PAGE_KEY = re.compile(r'<meta name=mam-page-key content="([A-Za-z0-9_-]{43})">')
ORIGIN = {"Origin": BASE}


@dataclass
class ConsoleStack:
    fixture: LocalBackendFixture
    console: Console
    app: Any
    inbox: dict[str, Any]

    @property
    def backend(self) -> Any:
        return self.fixture[0]

    @property
    def key(self) -> str:
        return self.fixture[2]

    def http(self, base: str = BASE) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=self.app), base_url=base)

    async def ingest(self, subject: str, body: str = "hello", html: str | None = None, **extra: Any) -> bytes:
        message = EmailMessage()
        message["From"] = extra.get("sender", "Jane <jane@example.com>")
        message["To"] = self.inbox["email"]
        message["Subject"] = subject
        message.set_content(body)
        if html is not None:
            message.add_alternative(html, subtype="html")
        for name, data in extra.get("attachments", []):
            message.add_attachment(data, maintype="application", subtype="pdf", filename=name)
        raw = message.as_bytes()
        await self.backend.ingest(raw, "jane@example.com", [self.inbox["email"]])
        return raw


@pytest_asyncio.fixture
async def stack(local_backend: LocalBackendFixture) -> AsyncIterator[ConsoleStack]:
    backend, _, key = local_backend
    hub = EventHub()
    backend.add_event_sink(hub.publish)
    console = Console(backend, hub, live_check_seconds=0.1)
    app = create_app(backend, extra_routes=[Mount(CONSOLE_PATH, app=console.app)])
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app), base_url="http://local.test", headers={"X-API-Key": key}
    ) as api:
        created = await api.post("/v1/inboxes", json={"username": "scout"})
        assert created.status_code == 201, created.text
    try:
        yield ConsoleStack(local_backend, console, app, created.json())
    finally:
        hub.close()
        console.close()


async def sign_in(stack: ConsoleStack, http: httpx2.AsyncClient) -> str:
    """Sign `http` in through a fresh one-time link, as the page does: the cookie, and the page key
    from the sign-in answer sent with every request (a default header of `http`). Returns the key."""
    link = await http.post(f"{CONSOLE_PATH}/api/login-token", headers={"X-API-Key": stack.key})
    assert link.status_code == 201, link.text
    landed = await http.get(link.json()["path"])
    assert landed.status_code == 200
    match = PAGE_KEY.search(landed.text)
    assert match is not None, landed.text
    http.headers["X-Console-Key"] = match.group(1)
    page = await http.get(f"{CONSOLE_PATH}/")
    assert page.status_code == 200, page.text
    assert match.group(1) not in page.text  # handed out once, never again
    return match.group(1)


async def test_the_sign_in_link_works_once_and_sets_a_strict_http_only_cookie(stack: ConsoleStack) -> None:
    async with stack.http() as http:
        assert (await http.get(f"{CONSOLE_PATH}/api/inboxes")).status_code == 401
        signed_out = await http.get(f"{CONSOLE_PATH}/")
        assert signed_out.status_code == 401 and "mam-mcp console" in signed_out.text

        refused = await http.post(f"{CONSOLE_PATH}/api/login-token", headers={"X-API-Key": "tk_wrong"})
        assert refused.status_code == 401
        link = (await http.post(f"{CONSOLE_PATH}/api/login-token", headers={"X-API-Key": stack.key})).json()["path"]
        assert link.startswith(f"{CONSOLE_PATH}/login?token=")

        landed = await http.get(link)
        assert landed.status_code == 200  # a page that keeps the key and replaces itself with the console
        assert "location" not in landed.headers and f"{CONSOLE_PATH}/static/sign_in.js" in landed.text
        key_in_page = PAGE_KEY.search(landed.text)
        assert key_in_page is not None
        cookie = landed.headers["set-cookie"]
        assert cookie.startswith("mam_console_8725=")
        flags = {part.strip().lower() for part in cookie.split(";")[1:]}
        assert {"httponly", "samesite=strict", f"path={CONSOLE_PATH}"} <= flags
        assert "token" not in cookie.lower()

        page = await http.get(f"{CONSOLE_PATH}/")
        assert page.status_code == 200
        assert stack.key not in page.text and "tk_" not in page.text  # no key in the page
        assert page.headers["x-frame-options"] == "DENY"
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["cache-control"] == "no-store"
        assert page.headers["referrer-policy"] == "no-referrer"
        assert (await http.get(f"{CONSOLE_PATH}/api/inboxes")).status_code == 401  # the cookie alone: no
        page_key = key_in_page.group(1)
        assert page_key not in page.text
        inboxes = (await http.get(f"{CONSOLE_PATH}/api/inboxes", headers={"X-Console-Key": page_key})).json()
        assert [i["email"] for i in inboxes["inboxes"]] == [stack.inbox["email"]]

    async with stack.http() as other:  # the same link again, from another browser: refused
        again = await other.get(link)
        assert again.status_code == 403 and "already used" in again.text
        assert "set-cookie" not in again.headers
        assert (await other.get(f"{CONSOLE_PATH}/api/inboxes")).status_code == 401


async def test_only_the_tenant_key_buys_a_sign_in_link(stack: ConsoleStack) -> None:
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=stack.app), base_url="http://local.test", headers={"X-API-Key": stack.key}
    ) as api:
        inbox_key = (await api.post(f"/v1/inboxes/{stack.inbox['id']}/keys", json={})).json()["key"]
    async with stack.http() as http:
        refused = await http.post(f"{CONSOLE_PATH}/api/login-token", headers={"X-API-Key": inbox_key})
        assert refused.status_code == 403


async def test_foreign_host_and_origin_are_refused_even_with_a_session(stack: ConsoleStack) -> None:
    async with stack.http() as http:
        key = await sign_in(stack, http)
        rebinding = await http.get(f"{CONSOLE_PATH}/api/inboxes", headers={"Host": "attacker.example:8725"})
        assert rebinding.status_code == 403 and rebinding.json()["code"] == "FORBIDDEN_HOST"
        wrong_port = await http.get(f"{CONSOLE_PATH}/api/inboxes", headers={"Host": "127.0.0.1:9999"})
        assert wrong_port.status_code == 403
        foreign = await http.get(f"{CONSOLE_PATH}/api/inboxes", headers={"Origin": "http://attacker.example"})
        assert foreign.status_code == 403 and foreign.json()["code"] == "FORBIDDEN_ORIGIN"
        token = await http.post(
            f"{CONSOLE_PATH}/api/login-token",
            headers={"X-API-Key": stack.key, "Origin": "http://attacker.example"},
        )
        assert token.status_code == 403
        # Another loopback port is the same site for cookies (SameSite ignores ports): still refused.
        other_port = await http.get(f"{CONSOLE_PATH}/api/inboxes", headers={"Origin": "http://localhost:3000"})
        assert other_port.status_code == 403
        same_site_name = await http.get(f"{CONSOLE_PATH}/api/inboxes", headers={"Origin": "http://localhost:8725"})
        assert same_site_name.status_code == 200
        discard = await http.delete(
            f"{CONSOLE_PATH}/api/inboxes/{stack.inbox['id']}/drafts/x",
            headers={"Origin": "http://attacker.example", "X-Console-Key": key},
        )
        assert discard.status_code == 403


async def test_state_changes_need_the_page_key_in_a_header_and_our_origin(stack: ConsoleStack) -> None:
    await stack.ingest("Please read me")
    store = stack.backend.store
    message = (await store.mail.list_messages(stack.inbox["id"], limit=1))[0]
    path = f"{CONSOLE_PATH}/api/inboxes/{stack.inbox['id']}/messages/{message['id']}"
    async with stack.http() as http:
        key = await sign_in(stack, http)
        for headers, status in (
            ({**ORIGIN, "X-Console-Key": ""}, 401),
            ({**ORIGIN, "X-Console-Key": "forged"}, 401),
            ({"X-Console-Key": key}, 403),  # no Origin
        ):
            refused = await http.patch(path, json={"isRead": True}, headers=headers)
            assert refused.status_code == status, headers
            assert refused.json()["code"] in ("CONSOLE_SIGNED_OUT", "FORBIDDEN_ORIGIN")
        # A write never takes the key from the query: a link or a form could carry that.
        via_query = await http.patch(f"{path}?key={key}", json={"isRead": True}, headers={**ORIGIN, "X-Console-Key": ""})
        assert via_query.status_code == 401
        assert (await store.mail.get_message(stack.inbox["id"], message["id"]))["is_read"] == 0
        done = await http.patch(path, json={"isRead": True}, headers={**ORIGIN, "X-Console-Key": key})
        assert done.status_code == 200
        assert (await store.mail.get_message(stack.inbox["id"], message["id"]))["is_read"] == 1

        signed_out = await http.post(f"{CONSOLE_PATH}/logout", headers={**ORIGIN, "X-Console-Key": key})
        assert signed_out.status_code == 200
        assert (await http.get(f"{CONSOLE_PATH}/api/inboxes")).status_code == 401


async def test_the_session_cookie_alone_opens_nothing(stack: ConsoleStack) -> None:
    """Browsers send a cookie to every port of its host: a server another local user runs on
    127.0.0.1 can collect the console's cookie from a person's browser and replay it. Without the
    page key (handed out once, to the page at the console's own origin) it reads and sends nothing."""
    await stack.ingest("Secret plans", body="the plans", html="<p>the plans</p>",
                       attachments=[("plans.pdf", b"%PDF-1.4 plans")])  # fmt: skip
    store = stack.backend.store
    inbox = stack.inbox["id"]
    message = (await store.mail.list_messages(inbox, limit=1))[0]
    draft = await store.mail.create_draft(inbox, {"to": ["jane@example.com"], "subject": "Hi", "plain_body": "A"})
    async with stack.http() as person:
        key = await sign_in(stack, person)
        detail = (await person.get(f"{CONSOLE_PATH}/api/inboxes/{inbox}/messages/{message['id']}")).json()
        shown = (await person.get(f"{CONSOLE_PATH}/api/inboxes/{inbox}/drafts/{draft['id']}")).json()
        cookie = "; ".join(f"{name}={value}" for name, value in person.cookies.items())
    msg = f"{CONSOLE_PATH}/api/inboxes/{inbox}/messages/{message['id']}"
    async with stack.http() as thief:  # the cookie, and every header a script outside a browser can set
        thief.headers.update({"Cookie": cookie, **ORIGIN})
        page = await thief.get(f"{CONSOLE_PATH}/")
        assert page.status_code == 200 and key not in page.text and "Secret plans" not in page.text
        for url in (
            f"{CONSOLE_PATH}/api/inboxes", f"{CONSOLE_PATH}/api/inboxes/{inbox}/messages",
            f"{CONSOLE_PATH}/api/inboxes/{inbox}/search?q=plans", msg, f"{msg}/html", f"{msg}/raw",
            f"{msg}/attachments/{detail['attachments'][0]['id']}", f"{CONSOLE_PATH}/api/events",
            f"{CONSOLE_PATH}/api/inboxes/{inbox}/drafts/{draft['id']}",
        ):  # fmt: skip
            refused = await thief.get(url)
            assert refused.status_code == 401, url
            assert b"plans" not in refused.content and refused.json()["code"] == "CONSOLE_SIGNED_OUT"
        approve = await thief.post(
            f"{CONSOLE_PATH}/api/inboxes/{inbox}/drafts/{draft['id']}/approve",
            json={"contentHash": shown["preview"]["contentHash"]},
        )
        assert approve.status_code == 401
        assert await store.mail.list_messages(inbox, direction="outbound") == []
        # The key in the query is taken only where a page cannot send a header (the event stream,
        # the mail frame): a copied link to anything else carries nothing.
        in_query = await thief.get(f"{CONSOLE_PATH}/api/inboxes", params={"key": key})
        assert in_query.status_code == 401
        assert (await thief.get(f"{msg}/raw", params={"key": key})).status_code == 401  # downloads: header
        # With the key (the page's own requests), the same reads work: a header, or the query for
        # what the page cannot fetch with one (the mail frame, the event stream).
        assert (await thief.get(f"{msg}/raw", headers={"X-Console-Key": key})).content.startswith(b"From: Jane")
        assert (await thief.get(f"{msg}/html", params={"key": key})).status_code == 401  # a frame: a ticket
        # The mail frame's src is a navigation (kept in history): a one-use ticket, asked for with the key.
        src = (await thief.post(f"{msg}/frame", json={}, headers={"X-Console-Key": key})).json()["src"]
        assert key not in src and src.startswith(f"{msg}/html?ticket=")
        assert b"the plans" in (await thief.get(src)).content
        assert (await thief.get(src)).status_code == 401  # used up
        other = (await thief.post(f"{msg}/frame", json={"images": True}, headers={"X-Console-Key": key})).json()
        assert other["src"].endswith("&images=1")
        elsewhere = other["src"].replace(message["id"], "another-message")
        assert (await thief.get(elsewhere)).status_code == 401  # bound to its message's view
        assert (await thief.get(msg, headers={"X-Console-Key": key})).json()["subject"] == "Secret plans"


async def test_messages_page_newest_first_by_cursor_with_counts_and_search(stack: ConsoleStack) -> None:
    for index in range(7):
        await stack.ingest(f"Report {index}", body=f"body {index}" + (" zephyrine" if index % 3 == 0 else ""))
    inbox = stack.inbox["id"]
    async with stack.http() as http:
        key = await sign_in(stack, http)
        seen: list[str] = []
        after = None
        for _ in range(5):  # bounded: 7 messages in pages of 3
            query = {"limit": 3, **({"after": after} if after else {})}
            page = (await http.get(f"{CONSOLE_PATH}/api/inboxes/{inbox}/messages", params=query)).json()
            seen += [m["subject"] for m in page["messages"]]
            after = page["next"]
            if after is None:
                break
        assert seen == [f"Report {i}" for i in reversed(range(7))]
        assert "body" in (await http.get(f"{CONSOLE_PATH}/api/inboxes/{inbox}/messages")).json()["messages"][0]["snippet"]

        bad = await http.get(f"{CONSOLE_PATH}/api/inboxes/{inbox}/messages", params={"after": "not-a-cursor"})
        assert bad.status_code == 400
        too_many = await http.get(f"{CONSOLE_PATH}/api/inboxes/{inbox}/messages", params={"limit": 1000})
        assert too_many.status_code == 400
        unknown = await http.get(f"{CONSOLE_PATH}/api/inboxes/no-such-inbox/messages")
        assert unknown.status_code == 404

        found = (await http.get(f"{CONSOLE_PATH}/api/inboxes/{inbox}/search", params={"q": "zephyrine", "limit": 2})).json()
        assert [m["subject"] for m in found["messages"]] == ["Report 6", "Report 3"]
        rest = await http.get(
            f"{CONSOLE_PATH}/api/inboxes/{inbox}/search", params={"q": "zephyrine", "after": found["next"]}
        )
        assert [m["subject"] for m in rest.json()["messages"]] == ["Report 0"]

        counts = (await http.get(f"{CONSOLE_PATH}/api/inboxes")).json()["inboxes"][0]
        assert (counts["total"], counts["unread"], counts["drafts"], counts["capped"]) == (7, 7, 0, False)
        first = (await http.get(f"{CONSOLE_PATH}/api/inboxes/{inbox}/messages", params={"limit": 1})).json()
        opened = first["messages"][0]["id"]
        detail = await http.get(f"{CONSOLE_PATH}/api/inboxes/{inbox}/messages/{opened}")
        assert detail.json()["isRead"] is False  # looking is not reading: the agent's unread mail stays unread
        await http.patch(
            f"{CONSOLE_PATH}/api/inboxes/{inbox}/messages/{opened}",
            json={"isRead": True},
            headers={**ORIGIN, "X-Console-Key": key},
        )
        counts = (await http.get(f"{CONSOLE_PATH}/api/inboxes")).json()["inboxes"][0]
        assert (counts["total"], counts["unread"]) == (7, 6)

        threads = (await http.get(f"{CONSOLE_PATH}/api/inboxes/{inbox}/threads", params={"limit": 5})).json()
        assert len(threads["threads"]) == 5 and threads["next"] is not None


async def test_a_plus_tag_shows_in_the_list_and_search_and_only_where_there_is_one(stack: ConsoleStack) -> None:
    local, domain = stack.inbox["email"].split("@")
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "jane@example.com", f"{local}+run42@{domain}", "Tagged"
    message.set_content("quartzite")
    await stack.backend.ingest(message.as_bytes(), "jane@example.com", [f"{local}+run42@{domain}"])
    await stack.ingest("Plain", body="quartzite")
    inbox = stack.inbox["id"]
    async with stack.http() as http:
        await sign_in(stack, http)
        listed = (await http.get(f"{CONSOLE_PATH}/api/inboxes/{inbox}/messages")).json()["messages"]
        assert {m["subject"]: m["tag"] for m in listed} == {"Tagged": "run42", "Plain": None}
        found = (await http.get(f"{CONSOLE_PATH}/api/inboxes/{inbox}/search", params={"q": "quartzite"})).json()
        assert {m["subject"]: m["tag"] for m in found["messages"]} == {"Tagged": "run42", "Plain": None}


async def test_the_html_view_runs_nothing_and_loads_nothing_remote(stack: ConsoleStack) -> None:
    html = (
        '<html><head><meta http-equiv="refresh" content="0;url=http://127.0.0.1:9/refresh"></head><body>'
        "<p>Your code is <b>483921</b></p><script>document.title='ran'</script>"
        '<img src="http://127.0.0.1:9/pixel.gif"><form action="http://127.0.0.1:9/post"><input name=a></form>'
        '<a href="https://app.example.com/verify?token=abc">Verify</a></body></html>'
    )
    raw = await stack.ingest(
        "Your code", body="Your verification code is 483921", html=html, attachments=[("terms.pdf", b"%PDF-1.4 x")]
    )
    inbox = stack.inbox["id"]
    message = (await stack.backend.store.mail.list_messages(inbox, limit=1))[0]
    path = f"{CONSOLE_PATH}/api/inboxes/{inbox}/messages/{message['id']}"
    async with stack.http() as http:
        await sign_in(stack, http)
        view = await http.get(path + "/html")
        assert view.status_code == 200
        csp = view.headers["content-security-policy"]
        directives = {d.strip().split(" ")[0]: d.strip() for d in csp.split(";")}
        assert directives["sandbox"] == "sandbox allow-popups allow-popups-to-escape-sandbox"  # no scripts, no forms
        assert directives["default-src"] == "default-src 'none'"
        assert directives["img-src"] == "img-src data:"  # remote images blocked
        assert directives["form-action"] == "form-action 'none'"
        assert "script-src" not in directives  # falls back to default-src 'none'
        assert directives["frame-ancestors"] == "frame-ancestors 'self'"
        assert "x-frame-options" not in view.headers  # the console frames it
        assert "http-equiv" not in view.text and 'target="_blank"' in view.text
        with_images = await http.get(path + "/html", params={"images": "1"})
        assert "img-src data: http: https:" in with_images.headers["content-security-policy"]
        assert "sandbox" in with_images.headers["content-security-policy"]

        detail = (await http.get(path)).json()
        assert detail["extracted"] == {"code": "483921", "links": ["https://app.example.com/verify?token=abc"]}
        assert ["Subject", "Your code"] in detail["headers"]
        assert detail["hasHtml"] is True and detail["attachments"][0]["filename"] == "terms.pdf"

        source = await http.get(path + "/raw")
        assert source.content == raw
        assert source.headers["content-disposition"].startswith("attachment;")
        assert source.headers["content-type"].startswith("message/rfc822")
        attachment = await http.get(f"{path}/attachments/{detail['attachments'][0]['id']}")
        assert attachment.content == b"%PDF-1.4 x"
        assert attachment.headers["content-type"] == "application/octet-stream"
        assert 'filename="terms.pdf"' in attachment.headers["content-disposition"]


async def test_approving_a_changed_draft_is_refused_and_answers_the_new_version(stack: ConsoleStack) -> None:
    store = stack.backend.store
    inbox = stack.inbox["id"]
    draft = await store.mail.create_draft(
        inbox, {"to": ["jane@example.com"], "subject": "Quote", "plain_body": "It is 100 EUR."}
    )
    path = f"{CONSOLE_PATH}/api/inboxes/{inbox}/drafts/{draft['id']}"
    async with stack.http() as http:
        key = await sign_in(stack, http)
        write = {**ORIGIN, "X-Console-Key": key}
        shown = (await http.get(path)).json()
        assert shown["preview"]["plainBody"] == "It is 100 EUR."
        assert shown["preview"]["newRecipients"] == ["jane@example.com"]
        # The agent rewrites the draft while the person reads it.
        await store.mail.update_draft(inbox, draft["id"], {"plain_body": "It is 1,000 EUR."})

        refused = await http.post(path + "/approve", json={"contentHash": shown["preview"]["contentHash"]}, headers=write)
        assert refused.status_code == 409
        body = refused.json()
        assert body["code"] == "CONTENT_CHANGED" and "nothing was sent" in body["error"]
        assert body["preview"]["plainBody"] == "It is 1,000 EUR."
        assert body["preview"]["contentHash"] != shown["preview"]["contentHash"]
        assert await store.mail.list_messages(inbox, direction="outbound") == []

        sent = await http.post(path + "/approve", json={"contentHash": body["preview"]["contentHash"]}, headers=write)
        assert sent.status_code == 201, sent.text
        assert sent.json()["sent"]["status"] == "captured"  # no relay: kept locally
        outbound = await store.mail.list_messages(inbox, direction="outbound")
        assert [m["plain_body"] for m in outbound] == ["It is 1,000 EUR."]
        assert await store.mail.get_draft(inbox, draft["id"]) is None
        assert (await http.get(path)).status_code == 404


async def test_editing_and_discarding_drafts(stack: ConsoleStack) -> None:
    store = stack.backend.store
    inbox = stack.inbox["id"]
    draft = await store.mail.create_draft(inbox, {"to": ["jane@example.com"], "subject": "Hi", "plain_body": "A"})
    path = f"{CONSOLE_PATH}/api/inboxes/{inbox}/drafts/{draft['id']}"
    async with stack.http() as http:
        key = await sign_in(stack, http)
        write = {**ORIGIN, "X-Console-Key": key}
        shown = (await http.get(path)).json()
        edited = await http.patch(
            path,
            json={"to": ["jane@example.com", "bob@example.org"], "subject": "Hello", "plainBody": "B",
                  "baseUpdatedAt": shown["draft"]["updatedAt"]},
            headers=write,
        )  # fmt: skip
        assert edited.status_code == 200, edited.text
        assert edited.json()["preview"]["to"] == ["jane@example.com", "bob@example.org"]
        assert edited.json()["preview"]["subject"] == "Hello"
        stale = await http.patch(
            path, json={"subject": "Mine", "baseUpdatedAt": shown["draft"]["updatedAt"]}, headers=write
        )
        assert stale.status_code == 409 and stale.json()["code"] == "DRAFT_CHANGED"
        assert (await store.mail.get_draft(inbox, draft["id"]))["subject"] == "Hello"
        injected = await http.patch(path, json={"subject": "Hi\r\nBcc: x@example.com"}, headers=write)
        assert injected.status_code == 400
        bad_address = await http.patch(path, json={"to": ["not an address"]}, headers=write)
        assert bad_address.status_code == 400

        assert (await http.delete(path, headers=write)).status_code == 200
        assert await store.mail.get_draft(inbox, draft["id"]) is None
        assert await store.mail.list_messages(inbox, direction="outbound") == []
        drafts = (await http.get(f"{CONSOLE_PATH}/api/inboxes/{inbox}/drafts")).json()["drafts"]
        assert drafts == []


async def test_the_event_stream_pushes_new_mail_and_draft_changes(stack: ConsoleStack) -> None:
    async with serve_asgi(stack.app) as base, httpx2.AsyncClient(base_url=base, timeout=10) as http:
        await sign_in(stack, http)
        async with http.stream("GET", f"{CONSOLE_PATH}/api/events") as events:
            assert events.headers["content-type"].startswith("text/event-stream")
            lines = events.aiter_lines()

            async def next_event() -> str:
                with anyio.fail_after(10):
                    async for line in lines:
                        if line.startswith("event: ") and line != "event: hello":
                            return line.removeprefix("event: ")
                raise AssertionError("the stream ended")

            with anyio.fail_after(10):
                async for line in lines:
                    if line == "event: hello":
                        break
            await stack.ingest("Live one")
            assert await next_event() == "mail"
            await stack.backend.store.mail.create_draft(stack.inbox["id"], {"to": ["a@example.com"], "subject": "x"})
            assert await next_event() == "changed"


async def test_two_sign_ins_in_one_browser_both_pages_keep_working_until_sign_out(stack: ConsoleStack) -> None:
    """`mam-mcp console` run again while a console tab is open: the browser keeps the newer cookie,
    and both pages (each with its own key) keep working; a key without a live cookie opens nothing;
    signing out ends the session of the page that asked and the browser's."""
    inboxes = f"{CONSOLE_PATH}/api/inboxes"
    async with stack.http() as browser:
        first_key = await sign_in(stack, browser)
        second_key = await sign_in(stack, browser)  # the cookie is the second session's now
        assert first_key != second_key and len(browser.cookies) == 1
        for key in (first_key, second_key):
            assert (await browser.get(inboxes, headers={"X-Console-Key": key})).status_code == 200
        async with stack.http() as no_cookie:
            assert (await no_cookie.get(inboxes, headers={"X-Console-Key": first_key})).status_code == 401
        out = await browser.post(f"{CONSOLE_PATH}/logout", headers={**ORIGIN, "X-Console-Key": first_key})
        assert out.status_code == 200
        for key in (first_key, second_key):  # the page's session and the browser's cookie: both ended
            assert (await browser.get(inboxes, headers={"X-Console-Key": key})).status_code == 401
        # Signing out ends every session of the person, not only the two this request touched.
        keys = [await sign_in(stack, browser) for _ in range(3)]
        out = await browser.post(f"{CONSOLE_PATH}/logout", headers={**ORIGIN, "X-Console-Key": keys[2]})
        assert out.status_code == 200
        fresh = await sign_in(stack, browser)  # a new live cookie: the old keys still open nothing
        for key in keys:
            assert (await browser.get(inboxes, headers={"X-Console-Key": key})).status_code == 401
        assert (await browser.get(inboxes, headers={"X-Console-Key": fresh})).status_code == 200
