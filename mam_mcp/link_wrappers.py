"""Unwrapping links that a mail gateway rewrote to pass through its own redirector.

Pure functions, no I/O. Only wrappers that carry the destination inside the URL are unwrapped
(no request is ever made): Microsoft Defender / Outlook Safe Links, Google's `/url` redirect,
Proofpoint URL Defense (v2 and v3) and Barracuda Link Protect, the security gateways that
rewrite every link of a mail in corporate and Gmail-forwarded inboxes; and Amazon SES click
tracking (`*.awstrack.me/L0/<destination>/...`), which wraps the links of much transactional
mail. Other sending services' click tracking (SendGrid, Mailchimp, ...) hides the destination
behind an opaque id and stays as it is.
"""

from __future__ import annotations

import base64
import binascii
import re
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["unwrap_link"]

_MAX_DEPTH = 3  # a Safe Link around a Google redirect around ...: bounded
_SAFELINKS_HOST = re.compile(r"(?:^|\.)safelinks\.protection\.(?:outlook\.com|office365\.us|outlook\.cn)$")
_GOOGLE_HOST = re.compile(r"^(?:www\.)?google\.(?:com|[a-z]{2}|co\.[a-z]{2}|com\.[a-z]{2})$")
_URLDEFENSE_V3 = re.compile(
    r"^https?://urldefense(?:\.proofpoint)?\.com/v3/__(.+?)__;([^!]*)!", re.IGNORECASE
)
_V3_TOKEN = re.compile(r"\*(\*.)?")
_V3_RUN_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _is_web_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
    except ValueError:
        return False


def _query_value(query: str, *names: str) -> str | None:
    values = parse_qs(query, keep_blank_values=False)
    for name in names:
        for value in values.get(name, []):
            if _is_web_url(value.strip()):
                return value.strip()
    return None


def _urldefense_v2(query: str) -> str | None:
    encoded = parse_qs(query).get("u", [""])[0]
    # v2 writes %XX as -XX and / as _ (a literal - is itself -2D)
    return unquote(encoded.replace("-", "%").replace("_", "/")) if encoded else None


def _urldefense_v3(url: str) -> str | None:
    match = _URLDEFENSE_V3.match(url)
    if match is None:
        return None
    template, encoded = match.groups()
    try:
        replacements = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    position = 0

    def replace(token: re.Match[str]) -> str:
        # "*" stands for the next replaced character; "**X" for a run of them (length from X)
        nonlocal position
        run = 1 if token.group(1) is None else _V3_RUN_CHARS.find(token.group(1)[1]) + 2
        if run == 1 and token.group(1) is not None or position + run > len(replacements):
            raise ValueError("replacement out of range")
        position += run
        return replacements[position - run : position]

    try:
        return _V3_TOKEN.sub(replace, template)
    except ValueError:
        return None


def _unwrap_once(url: str) -> tuple[str, str] | None:
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
    except ValueError:  # e.g. "http://[::1": not a URL we can read, so not one we unwrap
        return None
    destination: str | None = None
    wrapper = ""
    if _SAFELINKS_HOST.search(host):
        destination, wrapper = _query_value(parts.query, "url"), "outlook_safelinks"
    elif _GOOGLE_HOST.match(host) and parts.path == "/url":
        destination, wrapper = _query_value(parts.query, "q", "url"), "google_redirect"
    elif host == "urldefense.proofpoint.com" and parts.path.startswith("/v2/url"):
        destination, wrapper = _urldefense_v2(parts.query), "proofpoint_urldefense"
    elif host in ("urldefense.com", "urldefense.proofpoint.com") and parts.path.startswith("/v3/"):
        destination, wrapper = _urldefense_v3(url), "proofpoint_urldefense"
    elif host == "linkprotect.cudasvc.com" and parts.path == "/url":
        destination, wrapper = _query_value(parts.query, "a"), "barracuda_linkprotect"
    elif host.endswith(".awstrack.me") and parts.path.startswith("/L0/"):
        destination, wrapper = unquote(parts.path.split("/")[2]), "amazon_ses_tracking"
    if destination is None or not _is_web_url(destination):
        return None
    return destination, wrapper


def unwrap_link(url: str) -> tuple[str, str | None]:
    """The destination of a wrapped link and the outermost wrapper's name, or (url, None)."""
    outer: str | None = None
    for _ in range(_MAX_DEPTH):
        unwrapped = _unwrap_once(url)
        if unwrapped is None:
            break
        url, wrapper = unwrapped
        outer = outer or wrapper
    return url, outer
