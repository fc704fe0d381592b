"""One httpx2.AsyncClient for the /v1 contract: auth header, error mapping, retry policy.

Retry policy (DESIGN §3): GETs are retried on 429 `RATE_LIMITED` (or no code) after
`Retry-After`, and on 502/503, within a bounded budget. Sends are never retried: after a
5xx, a timeout or a dropped connection the outcome is unknown and the error says so.

Every POST and PUT carries an `Idempotency-Key` (client/idempotency.py: one per logical
request, the same across its retries). A write whose answer never came (a timeout, a dropped
connection after the request went out) is retried only with that key and only against a
backend that honours it on creates (`write_retries`, set for the local backend); otherwise,
and when the retry fails too, it is `WRITE_OUTCOME_UNKNOWN` with a hint naming what to list to
check. A connection that never opened sent nothing: that stays `CONNECTION_FAILED`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, overload
from urllib.parse import quote

import anyio
import httpx2

from mam_mcp import __version__
from mam_mcp.client.errors import (
    ConnectionFailed,
    MamError,
    RelayRejected,
    SendOutcomeUnknown,
    WriteOutcomeUnknown,
    error_from_response,
)
from mam_mcp.client.idempotency import request_key
from mam_mcp.loopback import is_loopback_url

__all__ = [
    "DEFAULT_TIMEOUT",
    "LONG_TIMEOUT",
    "SEND_TIMEOUT",
    "HttpCore",
    "RawResponse",
    "ResourceNamespace",
    "json_body",
    "path_segment",
]

logger = logging.getLogger("mam_mcp.client")

DEFAULT_TIMEOUT = 20.0
LONG_TIMEOUT = 90.0  # synchronous LinkedIn searches and signal runs take 10-15 s, sometimes much more
# A send may wait on an SMTP relay (30 s per step locally): give up later than it does, or we would
# report "outcome unknown" for a send that is still going through.
SEND_TIMEOUT = 60.0

_RETRYABLE_GET_STATUS = {502, 503}
_KEYED_METHODS = {"POST", "PUT"}
# Failures before the request went out: nothing was sent, whatever the method.
_NOT_SENT = (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.PoolTimeout)
_NON_RETRYABLE_429_CODES = {"LINKEDIN_RATE_LIMITED", "AUTH_LOCKOUT"}


@dataclass(frozen=True, slots=True)
class RawResponse:
    """Bytes of a download (raw .eml, attachment) with what the server said about them."""

    content: bytes
    content_type: str
    filename: str | None


class HttpCore:
    """The HTTP layer shared by every resource namespace."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        transport: httpx2.AsyncBaseTransport | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = 3,
        max_retry_wait: float = 30.0,
        write_retries: int = 0,
        before_send: Callable[[httpx2.Request], Awaitable[None]] | None = None,
    ) -> None:
        # before_send: awaited before every request leaves, WebSocket handshakes included (httpx2's
        # request hook); raising httpx2.ConnectError stops it unsent (the local daemon's owner check).
        root = base_url.rstrip("/")
        if not root.endswith("/v1"):
            root += "/v1"
        self.base_url = root
        self._api_key = api_key
        self._max_retries = max_retries
        self._max_retry_wait = max_retry_wait
        # Retries of a keyed write whose answer was lost: only for a backend that honours the key.
        self._write_retries = write_retries
        self._client = httpx2.AsyncClient(
            base_url=root,
            headers={
                "X-API-Key": api_key,
                "User-Agent": f"mam-mcp/{__version__}",
                "Accept": "application/json",
            },
            transport=transport,
            timeout=timeout,
            # As many kept-alive connections as concurrent ones: with httpx2's default of 20, an HTTP
            # transport serving more calls at once opened and closed a connection per extra request.
            limits=httpx2.Limits(max_connections=100, max_keepalive_connections=100),
            follow_redirects=False,
            # A proxy from the environment cannot reach this machine's loopback (the local backend),
            # and would see the key in plain HTTP: loopback goes direct.
            trust_env=not is_loopback_url(root),
            event_hooks={"request": [before_send]} if before_send is not None else None,
        )

    @property
    def api_key(self) -> str:
        return self._api_key

    @property
    def async_client(self) -> httpx2.AsyncClient:
        """The underlying client (base URL, auth header, transport), for WebSockets and streams."""
        return self._client

    @property
    def key_prefix(self) -> str:
        """The key's scope prefix (tk_, wk_, ak_, mam_) — safe to show; the rest is not."""
        head, sep, _ = self._api_key.partition("_")
        return f"{head}_" if sep else "unknown"

    async def aclose(self) -> None:
        await self._client.aclose()

    @overload
    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        timeout: float | None = None,
        send: bool = False,
        retry: bool = True,
        expect: Literal["json"] = "json",
    ) -> dict[str, Any]: ...

    @overload
    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        timeout: float | None = None,
        send: bool = False,
        retry: bool = True,
        expect: Literal["bytes"],
    ) -> RawResponse: ...

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        timeout: float | None = None,
        send: bool = False,
        retry: bool = True,
        expect: Literal["json", "bytes"] = "json",
    ) -> dict[str, Any] | RawResponse:
        """Call the API; return parsed JSON (or RawResponse for `expect="bytes"`).

        `send=True` marks a request that sends mail (or spends quota): it gets an
        Idempotency-Key, is shielded from cancellation, and is never retried.
        `retry=False` is for reads that spend quota (LinkedIn post reads): no retry either.
        """
        clean_params = {k: _param(v) for k, v in (params or {}).items() if v is not None}
        headers: dict[str, str] = {}
        if send or method.upper() in _KEYED_METHODS:
            headers["Idempotency-Key"] = request_key(method, path, json)
        kwargs: dict[str, Any] = {"params": clean_params, "headers": headers}
        if json is not None:
            kwargs["json"] = json
        if timeout is None and send:
            timeout = SEND_TIMEOUT
        if timeout is not None:
            kwargs["timeout"] = timeout
        if send:
            # A cancelled tool call must not leave a send half-done and unreported (DESIGN §3).
            with anyio.CancelScope(shield=True):
                response = await self._send_once(method, path, kwargs)
        elif method.upper() != "GET":
            response = await self._write(method, path, kwargs)
        else:
            response = await self._with_retries(method, path, kwargs, self._max_retries if retry else 0)
        return self._result(response, expect)

    async def _write(self, method: str, path: str, kwargs: dict[str, Any]) -> httpx2.Response:
        """A write that is not a send: retried (same key) after a lost answer only where the key is honoured."""
        keyed = "Idempotency-Key" in kwargs["headers"]
        attempts = 1 + (self._write_retries if keyed else 0)
        for attempt in range(1, attempts + 1):
            try:
                return await self._client.request(method, path, **kwargs)
            except _NOT_SENT as exc:
                if attempt == 1:  # nothing went out
                    raise ConnectionFailed(f"could not connect to {self.base_url} ({type(exc).__name__})") from None
                raise WriteOutcomeUnknown(  # the first attempt went out and its answer was lost
                    f"{method} {path}: the API's answer was lost and the retry could not connect"
                    f" ({type(exc).__name__}); it may have been carried out",
                    hint=check_hint(method, path),
                ) from None
            except httpx2.TransportError as exc:  # the request went out; its answer did not come back
                if attempt < attempts:
                    logger.info("no answer to %s %s (%s); retrying with its Idempotency-Key", method, path,
                                type(exc).__name__)  # fmt: skip
                    continue
                what = "did not answer in time" if isinstance(exc, httpx2.TimeoutException) else "connection failed"
                raise WriteOutcomeUnknown(
                    f"{method} {path}: the API {what} ({type(exc).__name__}) after the request was sent; "
                    "it may have been carried out",
                    hint=check_hint(method, path),
                ) from None
        raise AssertionError("unreachable")  # the loop returns or raises

    async def _send_once(self, method: str, path: str, kwargs: dict[str, Any]) -> httpx2.Response:
        try:
            response = await self._client.request(method, path, **kwargs)
        except _NOT_SENT as exc:
            # The connection never opened: nothing was sent.
            raise ConnectionFailed(f"could not connect to {self.base_url} ({type(exc).__name__})") from None
        except (httpx2.TimeoutException, httpx2.TransportError) as exc:
            raise SendOutcomeUnknown(
                f"the connection failed during the request ({type(exc).__name__}); the send may have happened"
            ) from None
        if response.status_code >= 500:
            inner = error_from_response(response.status_code, _json_or_none(response), response.headers)
            if isinstance(inner, RelayRejected):  # a definite refusal: nothing was sent
                raise inner
            raise SendOutcomeUnknown(
                f"the API answered {response.status_code} {inner.code}: {inner.message}; the send may have happened",
                status=response.status_code,
            )
        return response

    async def _with_retries(
        self, method: str, path: str, kwargs: dict[str, Any], max_retries: int
    ) -> httpx2.Response:
        waited = 0.0
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self._client.request(method, path, **kwargs)
            except httpx2.ConnectError as exc:
                raise ConnectionFailed(f"could not connect to {self.base_url} ({type(exc).__name__})") from None
            except httpx2.TimeoutException as exc:
                raise ConnectionFailed(
                    f"the API did not answer in time ({type(exc).__name__})",
                    hint="Try again; if it keeps timing out, run `mam-mcp doctor`.",
                ) from None
            except httpx2.TransportError as exc:
                raise ConnectionFailed(f"the connection to the API failed ({type(exc).__name__})") from None
            delay = self._retry_delay(method, response, attempt, max_retries)
            if delay is None or waited + delay > self._max_retry_wait:
                return response
            logger.info("retrying %s %s after %.1fs (HTTP %s)", method, path, delay, response.status_code)
            await anyio.sleep(delay)
            waited += delay

    def _retry_delay(self, method: str, response: httpx2.Response, attempt: int, max_retries: int) -> float | None:
        if method != "GET" or attempt > max_retries:
            return None
        status = response.status_code
        if status == 429:
            body = _json_or_none(response)
            code = body.get("code") if isinstance(body, dict) else None
            if code in _NON_RETRYABLE_429_CODES or code not in (None, "RATE_LIMITED"):
                return None
            retry_after = error_from_response(status, body, response.headers).retry_after
            return float(retry_after) if retry_after is not None else float(1 << (attempt - 1))
        if status in _RETRYABLE_GET_STATUS:
            return 0.5 * float(1 << (attempt - 1))
        return None

    def _result(self, response: httpx2.Response, expect: Literal["json", "bytes"]) -> dict[str, Any] | RawResponse:
        if response.status_code >= 400:
            raise error_from_response(response.status_code, _json_or_none(response), response.headers)
        if expect == "bytes":
            return RawResponse(
                content=response.content,
                content_type=response.headers.get("content-type", "application/octet-stream"),
                filename=_filename(response.headers.get("content-disposition")),
            )
        if not response.content:
            return {}
        try:
            data = response.json()
        except ValueError:
            raise MamError(f"the API returned a non-JSON answer (HTTP {response.status_code})") from None
        if not isinstance(data, dict):
            raise MamError(f"the API returned JSON that is not an object (HTTP {response.status_code})")
        return data


class ResourceNamespace:
    """A group of endpoints (`client.inboxes`, `client.linkedin.signals`) over the shared HttpCore."""

    def __init__(self, http: HttpCore) -> None:
        self._http = http


_CHECK_BY_COLLECTION = {
    "inboxes": "list_inboxes",
    "drafts": "list_drafts",
    "lists": "list_address_lists",
    "entries": "get_address_list",
    "addresses": "get_inbox",
    "domains": "list_domains",
    "workspaces": "list_workspaces",
    "webhooks": "list_webhooks",
}


def check_hint(method: str, path: str) -> str:
    """What to look at, after a write whose answer was lost, before doing it again."""
    parts = [p for p in path.split("?")[0].split("/") if p]
    if method.upper() in _KEYED_METHODS and parts:
        collection = parts[-1]
        if collection == "keys":
            if len(parts) > 1 and parts[0] == "workspaces":
                return "It may have been created: call list_workspace_keys to check before creating another."
            return (
                "The key may have been created (inbox keys cannot be listed). Do not repeat the call blindly: "
                "if you still need a key, create one more and use that one."
            )
        tool = _CHECK_BY_COLLECTION.get(collection)
        if tool is not None:
            return f"It may have been created: call {tool} to check before creating it again; do not repeat the call blindly."
        return "It may have been created: list or get it to check before repeating the call; do not repeat it blindly."
    return WriteOutcomeUnknown.default_hint


def path_segment(value: str) -> str:
    """One URL path segment, escaped so an id can never change the path."""
    segment = quote(str(value), safe="")
    # quote() leaves "." and "..", which the URL layer resolves as dot-segments (/inboxes/../webhooks).
    return segment.replace(".", "%2E") if segment in (".", "..") else segment


def json_body(**fields: Any) -> dict[str, Any]:
    """A JSON body with unset (None) fields left out."""
    return {k: v for k, v in fields.items() if v is not None}


def _param(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def _json_or_none(response: httpx2.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _filename(disposition: str | None) -> str | None:
    if not disposition:
        return None
    from email.message import Message  # stdlib parser handles quoting and RFC 2231

    msg = Message()
    msg["content-disposition"] = disposition
    return msg.get_filename()
