"""`Inbox`: one test's inbox on the local backend, and waiting for (or against) the mail an app sends it.

Sync methods for ordinary tests; the same methods, awaitable, on `inbox.aio` (an `AsyncInbox`) for
async tests, where a blocking wait would stall the event loop the app under test runs on.
A wait asks the backend's REST API for the inbox's mail, then again after 20 ms, doubling to at most
250 ms between looks, until something matches or the timeout passes (bounded in time).

Which mail counts: a mail is "returned" once a call handed it (or its code or link) to the test.
`wait_for_email` returns the oldest matching mail not returned yet, so calling it twice gets the
first mail and then the second; `expect_no_email` fails on any matching mail not returned yet
(one sent before the call included). `last_email`, `last_code` and `last_link` look at the newest
mail (with a code / a link), returned or not, and mark it returned.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Self, TypeVar
from urllib.parse import quote

import anyio
import httpx2

from mam_mcp.testing.email import Email, MailFilter, NoEmailError, TextMatch, UnexpectedEmailError

__all__ = ["AsyncInbox", "Inbox", "MailServerError", "api_error"]

DEFAULT_TIMEOUT = 10.0  # seconds a wait gives the app to send
DEFAULT_QUIET = 2.0  # seconds expect_no_email watches
_FIRST_DELAY, _MAX_DELAY = 0.02, 0.25
_PAGE, _MAX_PAGES = 100, 10  # a test inbox holding more than 1000 mails is read up to its newest 1000
_HTTP_TIMEOUT = 10.0

T = TypeVar("T")


class MailServerError(RuntimeError):
    """The local mail backend could not do what a test asked (not running, refused a request)."""


def _on_event_loop() -> bool:
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _delays(timeout: float) -> Iterator[float]:
    """How long to sleep before each next look, until `timeout` seconds from now have passed."""
    deadline = time.monotonic() + timeout
    delay = _FIRST_DELAY
    while (remaining := deadline - time.monotonic()) > 0:
        yield min(delay, remaining)
        delay = min(delay * 2, _MAX_DELAY)


def _emails(pages: list[list[dict[str, Any]]]) -> list[Email]:
    """Oldest first, each once (a mail arriving between two pages shifts the next page by one)."""
    seen: set[str] = set()
    out: list[Email] = []
    for item in (item for page in pages for item in page):
        if item["id"] not in seen:
            seen.add(item["id"])
            out.append(Email.from_wire(item))
    out.reverse()  # the API lists newest first
    return out


def api_error(doing: str, response: httpx2.Response) -> MailServerError:
    """The backend's refusal (`{"error": message, "code": CODE}`) as an exception saying what failed."""
    try:
        data = response.json()
        detail = f"{data.get('code', '')}: {data.get('error', '')}".strip(": ")
    except (ValueError, AttributeError):
        detail = response.text[:200]
    return MailServerError(f"{doing} failed: HTTP {response.status_code} {detail}")


def _unreachable(address: str, api_url: str, exc: Exception) -> MailServerError:
    return MailServerError(
        f"the local mail backend at {api_url} did not answer for {address} ({type(exc).__name__}); "
        "did the mam_mail_server fixture's daemon stop?"
    )


@dataclass(slots=True)
class _Mailbox:
    """What the sync and async handles share: where the inbox is, and which mails were returned."""

    inbox_id: str
    address: str
    api_url: str
    api_key: str = field(repr=False)
    taken: set[str] = field(default_factory=set)

    @property
    def messages_url(self) -> str:
        return f"{self.api_url}/v1/inboxes/{quote(self.inbox_id, safe='')}/messages"

    def params(self, page: int) -> dict[str, Any]:
        return {"direction": "inbound", "limit": _PAGE, "offset": page * _PAGE}

    def take(self, emails: list[Email], wanted: MailFilter) -> Email | None:
        for email in emails:
            if email.id not in self.taken and wanted.admits(email):
                self.taken.add(email.id)
                return email
        return None

    def newest(self, pick: Callable[[Email], T | None]) -> Callable[[list[Email]], T | None]:
        """A check for `_poll`: `pick` of the newest mail where it is not None (that mail is returned)."""

        def check(emails: list[Email]) -> T | None:
            for email in reversed(emails):
                if (value := pick(email)) is not None:
                    self.taken.add(email.id)
                    return value
            return None

        return check

    def offender(self, emails: list[Email], unwanted: MailFilter) -> Email | None:
        return next((e for e in emails if e.id not in self.taken and unwanted.admits(e)), None)

    def nothing_came(self, what: str, seconds: float, emails: list[Email]) -> NoEmailError:
        message = f"no {what} reached {self.address} within {seconds:g} s"
        if not emails:
            return NoEmailError(message + "; the inbox received no mail at all")
        shown = "\n".join(
            f"  - {e.describe()}" + (" [already returned]" if e.id in self.taken else "") for e in emails[-5:]
        )
        more = f" (the last 5 of {len(emails)})" if len(emails) > 5 else ""
        return NoEmailError(f"{message}; it received{more}:\n{shown}")

    def unexpected(self, unwanted: MailFilter, seconds: float, email: Email) -> UnexpectedEmailError:
        return UnexpectedEmailError(
            f"expected no {unwanted.describe()} at {self.address} within {seconds:g} s, "
            f"but it received {email.describe()}",
            email,
        )


def _filter(
    from_: TextMatch, subject: TextMatch, body: TextMatch, where: Callable[[Email], bool] | None
) -> MailFilter:
    return MailFilter(from_=from_, subject=subject, body=body, where=where)


class Inbox:
    """A fresh inbox for one test. Send to `address` through `smtp_host`:`smtp_port` (no TLS, no login).

    `api_url` and `api_key` reach the backend's REST API (the MyAgentMail /v1 contract) for
    anything else; the key never shows in repr.
    """

    def __init__(
        self, *, inbox_id: str, address: str, api_url: str, api_key: str, smtp_host: str, smtp_port: int
    ) -> None:
        self._box = _Mailbox(inbox_id=inbox_id, address=address, api_url=api_url, api_key=api_key)
        self.smtp_host = smtp_host
        self.smtp_port = smtp_port
        self.aio = AsyncInbox(self._box, smtp_host=smtp_host, smtp_port=smtp_port)
        self._http: httpx2.Client | None = None

    @property
    def address(self) -> str:
        return self._box.address

    @property
    def id(self) -> str:
        return self._box.inbox_id

    @property
    def api_url(self) -> str:
        return self._box.api_url

    @property
    def api_key(self) -> str:
        return self._box.api_key

    def __repr__(self) -> str:
        return f"Inbox({self.address!r}, smtp={self.smtp_host}:{self.smtp_port})"

    # --- reading ----------------------------------------------------------------------------

    def emails(self) -> list[Email]:
        """Every mail the inbox received so far, oldest first (no waiting)."""
        if self._http is None:
            self._http = httpx2.Client(
                headers={"X-API-Key": self.api_key}, timeout=_HTTP_TIMEOUT, trust_env=False
            )
        pages: list[list[dict[str, Any]]] = []
        for page in range(_MAX_PAGES):
            try:
                response = self._http.get(self._box.messages_url, params=self._box.params(page))
            except httpx2.TransportError as exc:
                raise _unreachable(self.address, self.api_url, exc) from None
            if response.status_code != 200:
                raise api_error(f"reading the mail of {self.address}", response)
            pages.append(response.json()["messages"])
            if len(pages[-1]) < _PAGE:
                break
        return _emails(pages)

    def _poll(self, check: Callable[[list[Email]], T | None], seconds: float) -> tuple[T | None, list[Email]]:
        emails = self.emails()
        for delay in _delays(seconds):
            if (found := check(emails)) is not None:
                return found, emails
            time.sleep(delay)
            emails = self.emails()
        return check(emails), emails

    def _nothing_came(self, what: str, seconds: float, emails: list[Email]) -> NoEmailError:
        error = self._box.nothing_came(what, seconds, emails)
        if _on_event_loop():
            hint = (
                "(this blocking wait ran on the test's event loop, which an app served on that loop "
                "cannot use meanwhile: in an async test, await mam_inbox.aio.<method>(...) instead)"
            )
            error.args = (f"{error}\n{hint}",)
        return error

    # --- waiting ----------------------------------------------------------------------------

    def wait_for_email(
        self,
        *,
        from_: TextMatch = None,
        subject: TextMatch = None,
        body: TextMatch = None,
        where: Callable[[Email], bool] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Email:
        """The oldest matching mail not returned yet, waiting up to `timeout` s for it.

        Text filters match case-insensitively anywhere (`from_` in the sender's name or address);
        a compiled `re.Pattern` is searched instead. Raises `NoEmailError` (an AssertionError)
        listing what did arrive.
        """
        wanted = _filter(from_, subject, body, where)
        found, emails = self._poll(lambda es: self._box.take(es, wanted), timeout)
        if found is None:
            raise self._nothing_came(wanted.describe(), timeout, emails)
        return found

    def expect_no_email(
        self,
        *,
        within: float = DEFAULT_QUIET,
        from_: TextMatch = None,
        subject: TextMatch = None,
        body: TextMatch = None,
        where: Callable[[Email], bool] | None = None,
    ) -> None:
        """Pass when no matching mail (not returned yet) arrives in the next `within` s.

        Fails at once with `UnexpectedEmailError` (an AssertionError naming the mail) when one does,
        including one that came before the call and that no call returned.
        """
        unwanted = _filter(from_, subject, body, where)
        offender, _ = self._poll(lambda es: self._box.offender(es, unwanted), within)
        if offender is not None:
            raise self._box.unexpected(unwanted, within, offender)

    def last_email(self, *, timeout: float = DEFAULT_TIMEOUT) -> Email:
        """The newest mail, returned or not, waiting up to `timeout` s while there is none."""
        found, emails = self._poll(self._box.newest(lambda e: e), timeout)
        if found is None:
            raise self._nothing_came("email", timeout, emails)
        return found

    def last_code(self, *, timeout: float = DEFAULT_TIMEOUT) -> str:
        """The one-time code of the newest mail that has one, waiting up to `timeout` s while none has."""
        found, emails = self._poll(self._box.newest(lambda e: e.code), timeout)
        if found is None:
            raise self._nothing_came("email with a code", timeout, emails)
        return found

    def last_link(self, *, timeout: float = DEFAULT_TIMEOUT) -> str:
        """The best link (verify / confirm / magic sign-in first) of the newest mail that has a link."""
        found, emails = self._poll(self._box.newest(lambda e: e.link), timeout)
        if found is None:
            raise self._nothing_came("email with a link", timeout, emails)
        return found

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncInbox:
    """The awaitable twin of `Inbox` (`inbox.aio`): the same methods, for async tests.

    It shares which mails were returned with its `Inbox`. Each call opens its own HTTP client,
    so it works on whatever event loop the test runs (asyncio or trio).
    """

    def __init__(self, box: _Mailbox, *, smtp_host: str, smtp_port: int) -> None:
        self._box = box
        self.smtp_host = smtp_host
        self.smtp_port = smtp_port

    @property
    def address(self) -> str:
        return self._box.address

    def __repr__(self) -> str:
        return f"AsyncInbox({self.address!r}, smtp={self.smtp_host}:{self.smtp_port})"

    async def _fetch(self, http: httpx2.AsyncClient) -> list[Email]:
        pages: list[list[dict[str, Any]]] = []
        for page in range(_MAX_PAGES):
            try:
                response = await http.get(self._box.messages_url, params=self._box.params(page))
            except httpx2.TransportError as exc:
                raise _unreachable(self.address, self._box.api_url, exc) from None
            if response.status_code != 200:
                raise api_error(f"reading the mail of {self.address}", response)
            pages.append(response.json()["messages"])
            if len(pages[-1]) < _PAGE:
                break
        return _emails(pages)

    def _client(self) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(
            headers={"X-API-Key": self._box.api_key}, timeout=_HTTP_TIMEOUT, trust_env=False
        )

    async def emails(self) -> list[Email]:
        """Every mail the inbox received so far, oldest first (no waiting)."""
        async with self._client() as http:
            return await self._fetch(http)

    async def _poll(
        self, check: Callable[[list[Email]], T | None], seconds: float
    ) -> tuple[T | None, list[Email]]:
        async with self._client() as http:
            emails = await self._fetch(http)
            for delay in _delays(seconds):
                if (found := check(emails)) is not None:
                    return found, emails
                await anyio.sleep(delay)
                emails = await self._fetch(http)
            return check(emails), emails

    async def wait_for_email(
        self,
        *,
        from_: TextMatch = None,
        subject: TextMatch = None,
        body: TextMatch = None,
        where: Callable[[Email], bool] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Email:
        """See `Inbox.wait_for_email`."""
        wanted = _filter(from_, subject, body, where)
        found, emails = await self._poll(lambda es: self._box.take(es, wanted), timeout)
        if found is None:
            raise self._box.nothing_came(wanted.describe(), timeout, emails)
        return found

    async def expect_no_email(
        self,
        *,
        within: float = DEFAULT_QUIET,
        from_: TextMatch = None,
        subject: TextMatch = None,
        body: TextMatch = None,
        where: Callable[[Email], bool] | None = None,
    ) -> None:
        """See `Inbox.expect_no_email`."""
        unwanted = _filter(from_, subject, body, where)
        offender, _ = await self._poll(lambda es: self._box.offender(es, unwanted), within)
        if offender is not None:
            raise self._box.unexpected(unwanted, within, offender)

    async def last_email(self, *, timeout: float = DEFAULT_TIMEOUT) -> Email:
        """See `Inbox.last_email`."""
        found, emails = await self._poll(self._box.newest(lambda e: e), timeout)
        if found is None:
            raise self._box.nothing_came("email", timeout, emails)
        return found

    async def last_code(self, *, timeout: float = DEFAULT_TIMEOUT) -> str:
        """See `Inbox.last_code`."""
        found, emails = await self._poll(self._box.newest(lambda e: e.code), timeout)
        if found is None:
            raise self._box.nothing_came("email with a code", timeout, emails)
        return found

    async def last_link(self, *, timeout: float = DEFAULT_TIMEOUT) -> str:
        """See `Inbox.last_link`."""
        found, emails = await self._poll(self._box.newest(lambda e: e.link), timeout)
        if found is None:
            raise self._box.nothing_came("email with a link", timeout, emails)
        return found
