"""mail_review and dkim_check: each check on mails built in the test; DKIM signed with a key made in the
test and published through an injected lookup (dkimpy's dnsfunc), never through DNS."""

from __future__ import annotations

import base64
import importlib.util
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mam_mcp.dkim_check import organizational_domain
from mam_mcp.mail_review import Review, review_message
from tests.local.mime.test_hostile_mime import CORPUS as HOSTILE_MIME

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
SELECTOR_NAME = b"s1._domainkey.acme.example."
SIGNED_HEADERS = [
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
]


@pytest.fixture(scope="module")
def key() -> tuple[bytes, bytes]:
    """(private key PEM, DKIM key record) of a fresh 1024-bit RSA key."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem, b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)


def publishing(records: dict[bytes, bytes]) -> tuple[Callable[..., bytes | None], list[bytes]]:
    """A TXT lookup answering from `records`, and the list of names it was asked for."""
    asked: list[bytes] = []

    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        asked.append(name)
        return records.get(name)

    return lookup, asked


def mail(
    *,
    text: str | None = "Hello Sam,\nyour receipt is attached.\n",
    html: str
    | None = '<p>Hello Sam</p><p><a href="https://acme.example/receipt/1">acme.example/receipt/1</a></p>',
    headers: dict[str, str] | None = None,
    drop: tuple[str, ...] = (),
) -> bytes:
    message = EmailMessage()
    base = {
        "From": "Acme <noreply@acme.example>",
        "To": "sam@example.com",
        "Subject": "Your receipt",
        "Date": "Wed, 25 Nov 2026 11:00:00 +0000",
        "Message-ID": "<r1.20261125@acme.example>",
    }
    for name, value in {**base, **(headers or {})}.items():
        if name not in drop:
            message[name] = value
    if text is not None:
        message.set_content(text)
        if html is not None:
            message.add_alternative(html, subtype="html")
    elif html is not None:
        message.set_content(html, subtype="html")
    return message.as_bytes()


def signed(raw: bytes, pem: bytes, *, domain: bytes = b"acme.example", selector: bytes = b"s1") -> bytes:
    headers = [h for h in SIGNED_HEADERS if h.decode() + ":" in raw.decode("utf-8", "replace").lower()]
    return dkim.sign(raw, selector, domain, pem, include_headers=headers) + raw


def check(review: Review, check_id: str) -> tuple[str, str, tuple[str, ...]]:
    [found] = [c for c in review.checks if c.id == check_id]
    return found.status, found.summary, found.details


# --- DKIM ----------------------------------------------------------------------------------------


def test_a_signed_mail_verifies_with_the_published_key(key: tuple[bytes, bytes]) -> None:
    pem, record = key
    lookup, asked = publishing({SELECTOR_NAME: record})
    review = review_message(signed(mail(), pem), dns_txt=lookup, now=NOW)
    status, summary, details = check(review, "dkim")
    assert (status, summary) == ("pass", "DKIM signature verified and aligned with the From domain")
    assert details == ("d=acme.example s=s1: verified, signature verified with the published key",)
    assert asked == [SELECTOR_NAME]
    assert review.dkim[0].as_dict()["result"] == "verified"


def test_a_body_changed_after_signing_fails(key: tuple[bytes, bytes]) -> None:
    pem, record = key
    lookup, _ = publishing({SELECTOR_NAME: record})
    tampered = signed(mail(), pem).replace(b"your receipt is attached", b"your refund is attached")
    review = review_message(tampered, dns_txt=lookup, now=NOW)
    assert check(review, "dkim")[:2] == ("fail", "DKIM signature does not verify")
    assert review.dkim[0].reason == "body hash mismatch: the body changed after signing"
    assert review.checks[0].id == "dkim"  # the only problem comes first


def test_a_signed_header_changed_after_signing_fails(key: tuple[bytes, bytes]) -> None:
    pem, record = key
    lookup, _ = publishing({SELECTOR_NAME: record})
    tampered = signed(mail(), pem).replace(b"Subject: Your receipt", b"Subject: Your invoice")
    review = review_message(tampered, dns_txt=lookup, now=NOW)
    assert (review.dkim[0].result, review.dkim[0].reason) == (
        "failed",
        "signature does not match the published key",
    )


def test_a_key_of_another_pair_fails() -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    pem = other.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    published = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    der = published.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    lookup, _ = publishing({SELECTOR_NAME: b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)})
    review = review_message(signed(mail(), pem), dns_txt=lookup, now=NOW)
    assert review.dkim[0].result == "failed"


def test_no_published_key_is_present_not_verified(key: tuple[bytes, bytes]) -> None:
    pem, _ = key
    lookup, asked = publishing({})
    review = review_message(signed(mail(), pem), dns_txt=lookup, now=NOW)
    assert check(review, "dkim")[:2] == (
        "note",
        "DKIM-Signature present, not verified (its key could not be looked up)",
    )
    assert review.dkim[0].reason == "no key published for this selector"
    assert asked == [SELECTOR_NAME]


def test_a_lookup_that_fails_is_present_not_verified(key: tuple[bytes, bytes]) -> None:
    pem, _ = key

    def unreachable(name: bytes, timeout: int = 5) -> bytes | None:
        raise TimeoutError("no DNS here")

    review = review_message(signed(mail(), pem), dns_txt=unreachable, now=NOW)
    assert (review.dkim[0].result, review.dkim[0].reason) == (
        "not_verified",
        "key lookup failed (no DNS answer)",
    )
    assert check(review, "dkim")[0] == "note"


def test_a_signature_of_another_domain_verifies_but_does_not_align(key: tuple[bytes, bytes]) -> None:
    pem, record = key
    lookup, _ = publishing({b"s1._domainkey.mailer.example.": record})
    review = review_message(signed(mail(), pem, domain=b"mailer.example"), dns_txt=lookup, now=NOW)
    status, summary, details = check(review, "dkim")
    assert (status, review.dkim[0].result, review.dkim[0].aligned) == ("warn", "verified", False)
    assert "another domain" in summary and "(not aligned with From)" in details[0]


def test_a_subdomain_signature_aligns(key: tuple[bytes, bytes]) -> None:
    pem, record = key
    lookup, _ = publishing({b"s1._domainkey.mail.acme.example.": record})
    review = review_message(signed(mail(), pem, domain=b"mail.acme.example"), dns_txt=lookup, now=NOW)
    assert check(review, "dkim")[0] == "pass"


def test_an_ed25519_signature_is_verified_only_with_pynacl(key: tuple[bytes, bytes]) -> None:
    pem, _ = key
    raw = signed(mail(), pem).replace(b"a=rsa-sha256", b"a=ed25519-sha256", 1)
    lookup, _ = publishing({SELECTOR_NAME: b"v=DKIM1; k=ed25519; p=" + base64.b64encode(bytes(32))})
    result = review_message(raw, dns_txt=lookup, now=NOW).dkim[0]
    if (
        importlib.util.find_spec("nacl") is None
    ):  # PyNaCl is not a dependency: say so, do not call it a failure
        assert (result.result, result.reason) == (
            "not_verified",
            "ed25519 key: verifying it needs PyNaCl (pip install pynacl)",
        )
    else:  # an RSA signature under an ed25519 key cannot verify
        assert result.result == "failed"


def test_an_unsigned_mail_is_a_warning_and_makes_no_lookup() -> None:
    lookup, asked = publishing({})
    review = review_message(mail(), dns_txt=lookup, now=NOW)
    assert check(review, "dkim")[0] == "warn" and review.dkim == [] and asked == []


def test_organizational_domains_are_approximated_without_a_suffix_list() -> None:
    assert organizational_domain("mail.acme.example") == "acme.example"
    assert organizational_domain("news.shop.co.uk") == "shop.co.uk"
    assert organizational_domain("a.b.example.com.au") == "example.com.au"


# --- List-Unsubscribe -------------------------------------------------------------------------------

BULK_HTML = '<p>Our news</p><p><a href="https://acme.example/unsubscribe?u=1">Unsubscribe</a></p>'
ONE_CLICK = {
    "List-Unsubscribe": "<https://acme.example/u/1>, <mailto:u@acme.example>",
    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
}


@pytest.mark.parametrize(
    ("headers", "html", "status", "summary"),
    [
        ({}, BULK_HTML, "fail", "bulk-looking mail without a List-Unsubscribe header"),
        (
            {"List-Id": "<news.acme.example>"},
            None,
            "fail",
            "bulk-looking mail without a List-Unsubscribe header",
        ),
        ({"Precedence": "bulk"}, None, "fail", "bulk-looking mail without a List-Unsubscribe header"),
        ({}, None, "note", "no List-Unsubscribe; not needed: the mail does not look bulk"),
        (
            {"List-Unsubscribe": "<https://acme.example/u/1>"},
            BULK_HTML,
            "warn",
            "List-Unsubscribe without RFC 8058 one-click (List-Unsubscribe-Post)",
        ),
        (
            {
                "List-Unsubscribe": "<mailto:u@acme.example>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            },
            BULK_HTML,
            "fail",
            "one-click (RFC 8058) is declared but there is no https URI",
        ),
        (ONE_CLICK, BULK_HTML, "pass", "List-Unsubscribe with RFC 8058 one-click"),
    ],
)
def test_list_unsubscribe_for_bulk_looking_mail(
    headers: dict[str, str], html: str | None, status: str, summary: str
) -> None:
    review = review_message(mail(html=html, headers=headers), dns_txt=publishing({})[0], now=NOW)
    assert check(review, "list_unsubscribe")[:2] == (status, summary)


def test_one_click_needs_a_dkim_signature_covering_both_headers(key: tuple[bytes, bytes]) -> None:
    pem, record = key
    lookup, _ = publishing({SELECTOR_NAME: record})
    raw = mail(html=BULK_HTML, headers=ONE_CLICK)
    covered = review_message(signed(raw, pem), dns_txt=lookup, now=NOW)
    assert check(covered, "list_unsubscribe")[0] == "pass"
    uncovered = dkim.sign(raw, b"s1", b"acme.example", pem, include_headers=[b"from", b"subject"]) + raw
    status, summary, _ = check(review_message(uncovered, dns_txt=lookup, now=NOW), "list_unsubscribe")
    assert status == "warn" and "no verified DKIM signature covers both" in summary


# --- links, images, HTML, parts ---------------------------------------------------------------------


def test_a_link_whose_text_shows_another_site_is_flagged() -> None:
    html = (
        '<p><a href="https://evil.example/login">https://paypal.com/login</a></p>'
        '<p><a href="https://click.acme.com/ls/click?upn=1">acme.com/orders</a></p>'
        '<p><a href="https://nodejs.org/">Node.js</a> <a href="https://acme.com/help">Help</a></p>'
        '<p><a href="https://eur01.safelinks.protection.outlook.com/?url=https%3A%2F%2Fwww.acme.com%2Fx&amp;data=1">'
        "www.acme.com/x</a></p>"
    )
    review = review_message(mail(html=html), now=NOW)
    status, summary, details = check(review, "links")
    assert (status, summary, details) == (
        "fail",
        "1 link(s) show one site in their text but go to another",
        ("text shows paypal.com, goes to evil.example",),
    )
    assert [(link.shown_host, link.mismatch) for link in review.links] == [
        ("paypal.com", True),
        ("acme.com", False),  # a click tracker of the same organization
        (None, False),  # "Node.js" is a name, not a host
        (None, False),
        ("acme.com", False),  # compared with the destination inside the Safe Link
    ]
    assert review.links[4].destination == "https://www.acme.com/x"


def test_a_text_only_mail_lists_its_urls() -> None:
    review = review_message(
        mail(text="Open https://acme.example/a and https://b.example/c.\n", html=None), now=NOW
    )
    assert [(link.host, link.mismatch) for link in review.links] == [
        ("acme.example", False),
        ("b.example", False),
    ]
    assert check(review, "text_part")[0] == "pass" and check(review, "html")[0] == "note"


def test_images_without_alt_are_counted_but_tracking_pixels_are_not() -> None:
    html = (
        '<img src="https://cdn.acme.example/logo.png" alt="Acme"><img src="https://cdn.acme.example/hero.jpg">'
        '<img src="https://cdn.acme.example/spacer.gif" alt=""><img src="https://t.acme.example/o.gif" width="1" height="1">'
    )
    status, summary, details = check(review_message(mail(html=html), now=NOW), "images_alt")
    assert (status, summary, details) == (
        "warn",
        "1 of 3 image(s) have no alt attribute",
        ("hero.jpg (cdn.acme.example)",),
    )


def test_html_structure_problems_are_listed() -> None:
    html = "<html><body><div><table><tr><td>x</td></tr></div></span><p>ok</body></html>"
    status, _, details = check(review_message(mail(html=html), now=NOW), "html")
    assert status == "warn"
    assert details == ("<table> not closed before </div>", "stray </span>")


def test_well_formed_html_with_optional_end_tags_and_comments_passes() -> None:
    html = "<!--[if mso]><table><![endif]--><ul><li>one<li>two</ul><p>a<p>b<br><img src=x alt=y><div/>"
    assert check(review_message(mail(html=html), now=NOW), "html")[0] == "pass"


def test_html_only_mail_warns_and_a_mail_without_body_fails() -> None:
    assert check(review_message(mail(text=None), now=NOW), "text_part")[0] == "warn"
    empty = b"From: a@acme.example\r\nSubject: x\r\nContent-Type: image/png\r\n\r\niVBORw0KGgo=\r\n"
    assert check(review_message(empty, now=NOW), "text_part")[0] == "fail"


def test_size_reports_the_largest_part_and_gmail_clipping() -> None:
    message = EmailMessage()
    message["From"] = "a@acme.example"
    message.set_content("hi")
    message.add_alternative("<p>" + "x" * (110 * 1024) + "</p>", subtype="html")
    message.add_attachment(
        b"%PDF" + bytes(200 * 1024), maintype="application", subtype="pdf", filename="invoice.pdf"
    )
    review = review_message(message.as_bytes(), now=NOW)
    status, summary, details = check(review, "size")
    assert status == "warn" and summary.endswith("the HTML is over 102 KB, so Gmail clips it")
    assert "largest part application/pdf of 204,804 bytes" in summary and details == (
        "largest part: invoice.pdf",
    )
    assert review.size_bytes == len(message.as_bytes())


# --- headers ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "drop", "check_id", "status"),
    [
        ({}, (), "message_id", "pass"),
        ({}, ("Message-ID",), "message_id", "fail"),
        ({"Message-ID": "not-an-id"}, (), "message_id", "fail"),
        ({"Message-ID": "<abc@localhost>"}, (), "message_id", "warn"),
        ({}, ("Date",), "date", "fail"),
        ({"Date": "yesterday"}, (), "date", "fail"),
        ({"Date": "Wed, 25 Nov 2026 11:00:00 -0000"}, (), "date", "warn"),
        ({"Date": "Thu, 26 Nov 2026 11:00:00 +0000"}, (), "date", "warn"),
        ({}, ("From",), "from", "fail"),
        ({"From": "Acme Support"}, (), "from", "fail"),
        ({"From": "a@acme.example, b@acme.example"}, (), "from", "warn"),
        ({"Reply-To": "noreply@acme.example"}, (), "reply_to", "pass"),
        ({"Reply-To": "Support <help@acme-support.example>"}, (), "reply_to", "note"),
    ],
)
def test_header_checks(headers: dict[str, str], drop: tuple[str, ...], check_id: str, status: str) -> None:
    assert check(review_message(mail(headers=headers, drop=drop), now=NOW), check_id)[0] == status


def test_two_message_ids_fail() -> None:
    raw = mail().replace(b"Message-ID: ", b"Message-ID: <dup@acme.example>\nMessage-ID: ", 1)
    assert check(review_message(raw, now=NOW), "message_id")[:2] == (
        "fail",
        "2 Message-ID headers (there must be one)",
    )


def test_problems_come_first_and_mail_words_stay_in_details() -> None:
    html = '<a href="https://evil.example/">https://paypal.com</a><img src="https://cdn.acme.example/a.png">'
    review = review_message(mail(html=html, headers={"Reply-To": "x@other.example"}), now=NOW)
    statuses = [c.status for c in review.checks]
    assert statuses == sorted(statuses, key=("fail", "warn", "note", "pass").index)
    for c in review.checks:  # summaries are our words: no host or address from the mail
        assert not any(word in c.summary for word in ("paypal", "evil", "other.example", "cdn.acme"))


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\xff\xfe garbage \r\n\r\n\xff",
        b"From: =?bogus?q?x?=\r\nDate: 99 Foo 2026\r\n\r\n<a href='http://[::1'>x</a>",
    ],
)
def test_garbage_is_reviewed_not_raised(raw: bytes) -> None:
    review = review_message(raw, dns_txt=publishing({})[0], now=NOW)
    assert review.size_bytes == len(raw) and check(review, "from")[0] == "fail"


@pytest.mark.parametrize("name", sorted(HOSTILE_MIME))
def test_every_hostile_mime_mail_is_reviewed_not_raised(name: str) -> None:
    raw, _ = HOSTILE_MIME[name]
    review = review_message(raw, dns_txt=publishing({})[0], now=NOW)
    assert review.size_bytes == len(raw) and {c.id for c in review.checks} >= {"text_part", "from", "dkim"}
    if name == "thousand_level_nesting":
        assert check(review, "mime_structure")[0] == "fail" and check(review, "from")[0] == "pass"
