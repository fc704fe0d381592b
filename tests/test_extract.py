"""One-time code and verification-link extraction: a corpus of realistic mails, then one test per rule."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest

from mam_mcp.extract import extract_code, extract_link_details, extract_links, html_to_text
from mam_mcp.link_wrappers import unwrap_link

CORPUS = Path(__file__).parent / "data" / "verification_emails"
EXPECTED: dict[str, dict[str, object]] = json.loads((CORPUS / "expected.json").read_text("utf-8"))


def _parts(path: Path) -> tuple[str | None, str | None, str | None]:
    """(subject, text, html) as wait_for_email gets them from a stored message."""
    message = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
    assert isinstance(message, EmailMessage)
    text_part = message.get_body(preferencelist=("plain",))
    html_part = message.get_body(preferencelist=("html",))
    return (
        message["subject"],
        text_part.get_content() if text_part is not None else None,
        html_part.get_content() if html_part is not None else None,
    )


def test_corpus_is_large_and_every_mail_has_an_answer() -> None:
    mails = sorted(p.name for p in CORPUS.glob("*.eml"))
    assert len(mails) >= 80
    assert mails == sorted(EXPECTED)
    for name, answer in EXPECTED.items():  # a primary link always comes with its kind
        assert bool(answer["links"]) == ("kind" in answer), name


def _answers(name: str) -> dict[str, object]:
    subject, text, html = _parts(CORPUS / name)
    kept = [d for d in extract_link_details(text, html) if d.kind != "unsubscribe"]
    answer: dict[str, object] = {"code": extract_code(subject, text, html), "links": [d.url for d in kept[:1]]}
    if kept:
        answer["kind"] = kept[0].kind
    return answer


def test_corpus_hit_rate_is_every_mail() -> None:
    """The hit rate the README states: code, primary link and its kind, per mail of the corpus."""
    misses = {name: got for name in sorted(EXPECTED) if (got := _answers(name)) != EXPECTED[name]}
    hits = {
        field: sum(_answers(name).get(field) == EXPECTED[name].get(field) for name in EXPECTED)
        for field in ("code", "links", "kind")
    }
    print(json.dumps({"mails": len(EXPECTED), "all_right": len(EXPECTED) - len(misses), **hits}))
    assert misses == {}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_code(name: str) -> None:
    subject, text, html = _parts(CORPUS / name)
    assert extract_code(subject, text, html) == EXPECTED[name]["code"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_first_link(name: str) -> None:
    _, text, html = _parts(CORPUS / name)
    assert extract_links(text, html)[:1] == EXPECTED[name]["links"]


@pytest.mark.parametrize("name", sorted(n for n in EXPECTED if EXPECTED[n]["links"]))
def test_corpus_first_link_kind(name: str) -> None:
    _, text, html = _parts(CORPUS / name)
    first = extract_link_details(text, html)[0]
    assert (first.url, first.kind) == (EXPECTED[name]["links"][0], EXPECTED[name]["kind"])
    assert first.reason


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_links_are_distinct_http_and_free_of_unwanted_ones(name: str) -> None:
    _, text, html = _parts(CORPUS / name)
    links = extract_links(text, html)
    assert len(links) == len(set(links)) <= 5
    for link in links:
        assert link.startswith(("http://", "https://")) and "&amp;" not in link
        assert not any(word in link.lower() for word in ("unsubscribe", "privacy", "datenschutz", "baja"))
        assert not any(host in link for host in ("twitter.com", "x.com/", "facebook.com", "instagram.com"))
        assert not link.endswith((".png", ".gif", ".jpg"))


def test_inscriptis_is_imported_only_when_html_is_converted() -> None:
    probe = "import sys, mam_mcp.extract as e; e.extract_code('s', 'code 1234'); print('inscriptis' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=CORPUS.parents[2],
    )
    assert result.stdout.strip() == "False"


# --- codes: what counts ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("Your verification code is 4821.", "4821"),
        ("Your verification code is 12345678.", "12345678"),
        ("Your OTP: 483 921", "483921"),
        ("Your OTP: 483-921", "483921"),
        ("Security code 4839 2156", "48392156"),
        ("Use passcode K7X-92Q to continue", "K7X-92Q"),
        ("Your PIN: AB12CD", "AB12CD"),
        ("Dein Einmalpasswort: 551209", "551209"),
        ("Votre code : 384712", "384712"),
        ("Tu código es 920431", "920431"),
    ],
)
def test_code_shapes_next_to_a_keyword_are_found(body: str, code: str) -> None:
    assert extract_code(None, body) == code


def test_sender_tagged_code_comes_back_as_digits() -> None:
    assert extract_code("G-482913 is your Gmail-like verification code", None) == "482913"


def test_code_next_to_a_sign_in_instruction_is_found_without_a_code_keyword() -> None:
    assert extract_code("Welcome back", "Use 482913 to sign in to Acme.") == "482913"


def test_a_number_a_sentence_away_from_a_sign_in_word_is_not_a_code() -> None:
    assert (
        extract_code(
            "Confirm your email",
            "Welcome aboard! You are 10482 on the waitlist.\nConfirm: https://x.example/c",
        )
        is None
    )


def test_code_keyword_wins_over_a_sign_in_instruction() -> None:
    assert extract_code(None, "Sign in 2 times with 771203? No: your code is 604218") == "604218"


def test_code_in_the_subject_wins_over_one_in_the_body() -> None:
    assert extract_code("Your code is 111222", "Backup verification code: 333444") == "111222"


def test_subject_without_a_code_falls_back_to_the_body() -> None:
    assert extract_code("Verify your email", "Your code: 905116") == "905116"


def test_nearer_keyword_wins_between_two_numbers() -> None:
    body = "We added 2500 bonus points to your wallet 7781.\n\nEnter verification code 640192 now."
    assert extract_code(None, body) == "640192"


def test_code_alone_on_its_line_is_found_far_from_the_keyword() -> None:
    filler = "We need to check that this address is really yours before you continue. " * 2
    assert extract_code("Confirm your email", f"Verify your address.\n{filler}\n\n  905116  \n") == "905116"


def test_html_body_is_used_when_there_is_no_text_part() -> None:
    html = "<p>Your code is <b style='color:#D93025'>204618</b></p>"
    assert extract_code(None, None, html) == "204618"


def test_html_is_used_when_the_text_part_is_a_stub() -> None:
    assert extract_code(None, "View this mail in HTML.", "<p>Your passcode: 572048</p>") == "572048"


def test_code_split_over_inline_spans_is_joined() -> None:
    assert (
        extract_code(
            None, None, "<p>Code:</p><p><span>6</span><span>1</span><span>0</span><span>7</span></p>"
        )
        == "6107"
    )


def test_code_with_one_digit_per_table_cell_is_joined() -> None:
    html = (
        "<p>Your verification code:</p><table><tr>"
        + "".join(f"<td>{d}</td>" for d in "483921")
        + "</tr></table>"
    )
    assert extract_code(None, None, html) == "483921"


def test_mail_without_a_code_keyword_yields_nothing() -> None:
    assert extract_code("Welcome!", "Thanks for joining. Your member number is 558812. See you 2026.") is None


def test_empty_input_yields_nothing() -> None:
    assert extract_code(None, None, None) is None
    assert extract_code("", "", "") is None


# --- codes: decoys ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "decoy",
    [
        "2026-11-25",
        "25/11/2026",
        "25.11.2026",
        "Nov 25, 2026",
        "25 November 2026",
        "25 de noviembre de 2026",
        "in 2026",
        "at 10:45",
        "+1 (555) 123-4567",
        "555-123-4567",
        "(555) 010-2233",
        "+49 30 1234567",
        "$1,234.56",
        "1234 EUR",
        "1 234,56 €",
        "order #58213",
        "order number 58213",
        "invoice no. 2026118",
        "ticket 48213",
        "tracking number 1Z999AA10123456784",
        "Springfield, IL 62704",
        "Musterstraße 12, 10115 Berlin",
        "548 Market St PMB 90375, San Francisco, California 94104-5401",
        "1600 Amphitheatre Parkway\nMountain View, CA 94043",
        "colour #4285F4",
        "https://example.com/verify/839201?code=449120",
        "sam.4821@example.com",
        "card ending in 4821",
        "card ****4821",
        "Amtsgericht Berlin HRB 123456",
        "promo code SAVE2026",
        "zip code 94105",
        "IP 198.51.100.23",
        "expires in 1440 minutes",
        "get 1000 bonus points and 2500 miles",
        "join 1200 teams",
        "© 2026 Acme",
    ],
)
def test_decoy_number_near_a_keyword_is_not_a_code(decoy: str) -> None:
    assert extract_code(None, f"Your verification code email. Details: {decoy}.") is None


def test_year_is_a_code_only_right_next_to_the_keyword() -> None:
    assert extract_code(None, "Your code: 1987") == "1987"
    assert extract_code(None, "Your code is 1987.") == "1987"
    assert extract_code(None, "1987 is your Acme code") == "1987"
    assert extract_code(None, "Your code is ready. Thanks for being with us since 1987.") is None
    assert extract_code("Your Acme verification for 2026", None) is None


def test_huge_bodies_stay_fast() -> None:
    """Pathological inputs (long tokens, digit runs, thousands of decoys) are scanned in linear time."""
    bodies = [
        "Your code " + "a" * 30_000 + " 482913",
        "code " + "1" * 30_000,
        "code " + "1 " * 15_000,
        "x" * 30_000 + "@",
        "code " + "ABCD " * 6_000,
        "code:\n" + "brave-otter-lamp-river\n" * 1_300,
        "Order 12345 on 2026-11-25, call 555-123-4567, $12.00, https://x.example/a " * 1_000,
    ]
    started = time.monotonic()
    for body in bodies:
        extract_code("Your code", body, f"<p>{body}</p>")
        extract_links(body, f"<p>{body}</p>")
    assert time.monotonic() - started < 10  # quadratic regexes took minutes here


def test_decoys_around_the_code_do_not_win() -> None:
    body = (
        "Order #58213 placed on 2026-11-25 at 10:45 for $1,234.56.\n"
        "Call +1 (555) 123-4567 with questions.\n"
        "Your verification code is 739104.\n"
        "Acme Inc, 500 Howard Street, San Francisco, CA 94105"
    )
    assert extract_code("Acme order 58213", body) == "739104"


def test_lowercase_words_with_digits_are_not_alphanumeric_codes() -> None:
    assert extract_code(None, "Your verification is for user abc123def on host web01.") is None


# --- html_to_text ----------------------------------------------------------------------------


def test_html_to_text_drops_markup_styles_and_scripts() -> None:
    html = (
        "<html><head><style>p{color:#FF5733}</style><script>var x=1</script></head>"
        "<body><p>Hello&nbsp;<b>Sam</b> &amp; team</p><table><tr><td>Code</td><td>482913</td></tr></table></body></html>"
    )
    text = html_to_text(html)
    assert "Hello Sam & team" in text
    assert "482913" in text
    assert "FF5733" not in text and "var x" not in text and "<" not in text


def test_html_to_text_of_empty_html_is_empty() -> None:
    assert html_to_text("") == ""
    assert html_to_text("   ") == ""


# --- links -----------------------------------------------------------------------------------


def test_verification_link_ranks_before_earlier_ordinary_links() -> None:
    html = (
        '<a href="https://acme.example/">Acme</a> <a href="https://acme.example/blog">Blog</a>'
        '<a href="https://acme.example/confirm?t=1">Confirm email</a>'
    )
    assert extract_links(None, html) == [
        "https://acme.example/confirm?t=1",
        "https://acme.example/",
        "https://acme.example/blog",
    ]


def test_html_entities_in_hrefs_are_decoded() -> None:
    assert extract_links(None, '<a href="https://a.example/verify?x=1&amp;y=2">Verify</a>') == [
        "https://a.example/verify?x=1&y=2"
    ]


def test_anchor_text_ranks_a_tracked_link() -> None:
    html = (
        '<a href="https://click.a.example/c?u=111">Our blog</a>'
        '<a href="https://click.a.example/c?u=222">Activate your account</a>'
    )
    assert extract_links(None, html)[0] == "https://click.a.example/c?u=222"


def test_strong_verification_words_beat_a_login_link() -> None:
    text = "Log in: https://a.example/login\nVerify your email: https://a.example/verify/abc\n"
    assert extract_links(text) == ["https://a.example/verify/abc", "https://a.example/login"]


@pytest.mark.parametrize(
    "html",
    [
        '<a href="https://a.example/unsubscribe?u=1">Unsubscribe</a>',
        '<a href="https://click.a.example/c?u=9">Unsubscribe</a>',
        '<a href="https://a.example/privacy">Privacy</a>',
        '<a href="mailto:help@a.example">Mail us</a>',
        '<a href="tel:+15551234567">Call</a>',
        '<a href="https://twitter.com/acme">Twitter</a>',
        '<a href="https://www.facebook.com/acme">Facebook</a>',
        '<a href="https://cdn.a.example/logo.png">logo</a>',
        '<a href="https://t.a.example/track/open?id=1">.</a>',
        '<img src="https://a.example/verify/pixel.gif">',
    ],
)
def test_unwanted_links_are_dropped(html: str) -> None:
    assert extract_links(None, html) == []


def test_social_subdomains_are_dropped() -> None:
    assert extract_links(
        None, '<a href="https://m.facebook.com/acme">f</a><a href="https://a.example/">a</a>'
    ) == ["https://a.example/"]


def test_a_link_is_dropped_for_the_words_right_before_it_not_the_whole_line() -> None:
    text = "We respect your privacy and never share your data. Confirm here: https://a.example/c/1\n"
    assert extract_links(text) == ["https://a.example/c/1"]
    assert extract_links("Tired of these mails? Unsubscribe: https://a.example/u/1\n") == []


def test_links_are_deduplicated_across_text_and_html() -> None:
    text = "Verify: https://a.example/verify?x=1&y=2."
    html = '<a href="https://a.example/verify?x=1&amp;y=2">Verify</a>'
    assert extract_links(text, html) == ["https://a.example/verify?x=1&y=2"]


def test_trailing_punctuation_is_not_part_of_a_text_link() -> None:
    assert extract_links("Open (https://a.example/magic/abc), then come back.") == [
        "https://a.example/magic/abc"
    ]


def test_at_most_limit_links_are_returned() -> None:
    text = "\n".join(f"https://a.example/page/{i}" for i in range(10))
    assert extract_links(text, limit=3) == [f"https://a.example/page/{i}" for i in range(3)]
    assert len(extract_links(text)) == 5
    assert extract_links(text, limit=0) == []


def test_unreadable_urls_are_dropped_not_raised() -> None:
    html = '<a href="http://[::1">x</a><a href="https://a.example/verify">Verify</a>'
    assert extract_links("see http://[::1]x/ and http://[fe80::1/", html) == ["https://a.example/verify"]
    assert unwrap_link("https://www.google.com/url?q=http://[::1") == ("https://www.google.com/url?q=http://[::1", None)


def test_no_input_gives_no_links() -> None:
    assert extract_links(None, None) == []


# --- letter and word codes -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subject", "body", "code"),
    [
        (None, "Your verification code is: QXWMTR", "QXWMTR"),
        (None, "Enter this code in the app:\n\n  KQZ-WTX\n", "KQZ-WTX"),
        (None, "Ihr Bestätigungscode lautet: HKRMWP", "HKRMWP"),
        (None, "Votre code de vérification : XZTKPL", "XZTKPL"),
        (None, "Tu código de acceso es FJRNQW", "FJRNQW"),
        (None, "Seu código de acesso é MKTRZB", "MKTRZB"),
        (None, "Il tuo codice di verifica è: PLMQRT", "PLMQRT"),
        (None, "BXKTMD is your Acme verification code", "BXKTMD"),
        (None, "Your temporary login code: magenta-kiwi-2931", "magenta-kiwi-2931"),
        (None, "Here is your sign-in code:\n\n    brave-otter-lamp-river\n", "brave-otter-lamp-river"),
        ("Your Campfire code is tidy-plum-4417", "Welcome back!", "tidy-plum-4417"),
        (None, "Dein Anmeldecode: sonne-kiefer-8820", "sonne-kiefer-8820"),
        (None, "Din engångskod är 481 920", "481920"),
        (None, "確認コード：482019", "482019"),
    ],
)
def test_letter_and_word_codes_labelled_as_codes_are_found(subject: str | None, body: str, code: str) -> None:
    assert extract_code(subject, body) == code


@pytest.mark.parametrize(
    "body",
    [
        "Your code is BELOW.",
        "YOUR CODE IS BELOW, SCROLL DOWN",
        "CONFIRM YOUR EMAIL ADDRESS. VERIFY NOW",
        "PIN: NEVER SHARE IT",
        "Use promo code WELCOME at checkout. Your code expires soon.",
        "Discount code: FALLSALE",
        "Your verification code is single-use.",
        "Your code is ready-to-use once you sign in.",
        "Booking reference: XKQPTZ (confirmation sent to your email)",
        "We verified your ACCOUNT yesterday.",
        "Verify your email for the brave-otter-lamp team",
        "Your code: Welcome",
        "Enter the code we sent to your phone.\n\nSUPPORT\n",
        "Code of conduct\n\nRESPECT\n",
        "QR code: SCAN",
        "Dress code: CASUAL",
        "Your token is REVOKED",
        "Your code: high-quality-service",
    ],
)
def test_ordinary_words_near_a_code_keyword_are_not_codes(body: str) -> None:
    assert extract_code(None, body) is None


def test_a_digit_code_wins_over_a_letter_code_at_the_same_distance() -> None:
    assert extract_code(None, "Code: 604218\nBackup code: QXWMTR") == "604218"


def test_an_account_line_above_a_code_does_not_hide_it() -> None:
    assert extract_code(None, "Ecco il codice per accedere al tuo account:\n\n583920\n") == "583920"


# --- wrapped links ---------------------------------------------------------------------------

VERIFY = "https://app.acme.example/verify?token=a7c9&uid=1"


@pytest.mark.parametrize(
    ("wrapped", "wrapper"),
    [
        (
            (
                "https://nam12.safelinks.protection.outlook.com/?url=https%3A%2F%2Fapp.acme.example%2Fverify"
                "%3Ftoken%3Da7c9%26uid%3D1&data=05%7C02%7C&sdata=Qk9x%3D&reserved=0"
            ),
            "outlook_safelinks",
        ),
        ("https://www.google.com/url?q=https://app.acme.example/verify?token%3Da7c9%26uid%3D1&sa=D", "google_redirect"),
        (
            "https://www.google.com/url?sa=t&q=&url=https%3A%2F%2Fapp.acme.example%2Fverify%3Ftoken%3Da7c9%26uid%3D1",
            "google_redirect",
        ),
        (
            "https://urldefense.proofpoint.com/v2/url?u=https-3A__app.acme.example_verify-3Ftoken-3Da7c9-26uid-3D1&d=Dw",
            "proofpoint_urldefense",
        ),
        ("https://urldefense.com/v3/__https://app.acme.example/verify?token=a7c9&uid=1__;!!Bt8R!7d2k$", "proofpoint_urldefense"),
        (
            "https://linkprotect.cudasvc.com/url?a=https%3a%2f%2fapp.acme.example%2fverify%3ftoken%3da7c9%26uid%3d1&c=E,1",
            "barracuda_linkprotect",
        ),
        (
            "https://a1b2.r.us-east-1.awstrack.me/L0/https:%2F%2Fapp.acme.example%2Fverify%3Ftoken%3Da7c9%26uid%3D1/1/0100-000000/Xy=3",
            "amazon_ses_tracking",
        ),
    ],
)
def test_wrapped_links_come_back_as_their_destination(wrapped: str, wrapper: str) -> None:
    assert unwrap_link(wrapped) == (VERIFY, wrapper)
    detail = extract_link_details(None, f'<a href="{wrapped.replace("&", "&amp;")}">Verify email</a>')[0]
    assert (detail.url, detail.kind, detail.wrapper) == (VERIFY, "verify", wrapper)


def test_urldefense_v3_puts_back_the_characters_it_replaced() -> None:
    # "*" takes the next replaced character, "**A" a run of two; they are listed base64url after "__;"
    wrapped = "https://urldefense.com/v3/__https://a.example/x*y**Az__;LSF-!!Bt8R!7d2k$"
    assert unwrap_link(wrapped) == ("https://a.example/x-y!~z", "proofpoint_urldefense")


def test_wrappers_inside_wrappers_are_unwrapped_and_the_outer_one_named() -> None:
    inner = "https://www.google.com/url?q=" + VERIFY.replace("=", "%3D").replace("&", "%26")
    outer = "https://eur01.safelinks.protection.outlook.com/?url=" + inner.replace(":", "%3A").replace(
        "/", "%2F"
    ).replace("?", "%3F").replace("%", "%25").replace("%253A", "%3A").replace("%252F", "%2F").replace(
        "%253F", "%3F"
    )
    assert unwrap_link(outer) == (VERIFY, "outlook_safelinks")


@pytest.mark.parametrize(
    "url",
    [
        "https://nam12.safelinks.protection.outlook.com/?url=javascript%3Aalert(1)&data=1",
        "https://www.google.com/url?q=mailto:a@b.example",
        "https://www.google.com/search?q=https://app.acme.example/verify",
        "https://urldefense.com/v3/__https://a.example/x*__;!!Bt8R!7d2k$",  # a "*" without its character
        "https://app.acme.example/login?redirect=https://app.acme.example/home",  # not a wrapper
        "https://click.mailer.example/ls/click?upn=u001.Qk9x",  # opaque click tracking
    ],
)
def test_what_cannot_be_unwrapped_safely_stays_as_it_is(url: str) -> None:
    assert unwrap_link(url) == (url, None)


# --- what a link is for ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("html", "kind", "reason"),
    [
        ('<a href="https://a.example/account/verify?t=1">Continue</a>', "verify", "URL has 'verify'"),
        ('<a href="https://click.a.example/ls/click?upn=9">Confirm my email</a>', "verify", "link text has 'Confirm'"),
        ('<a href="https://a.example/password/reset?token=9f8e">Continue</a>', "reset", "URL has 'password'"),
        ('<a href="https://a.example/go/42">Passwort zurücksetzen</a>', "reset", "link text has 'Passwort'"),
        ('<a href="https://a.example/auth/magic?token=9f8e">Sign in</a>', "magic_sign_in", "URL has 'magic'"),
        (
            '<a href="https://a.example/login/callback?token=eyJhbGciOi">Log in</a>',
            "magic_sign_in",
            "sign-in word 'login' and a token (parameter 'token')",
        ),
        (
            '<a href="https://a.example/signin/Zk9xT2lQ7aB3kQ9xT2lQZk9x">Open</a>',
            "magic_sign_in",
            "sign-in word 'signin' and a token (a long random path segment)",
        ),
        (
            '<a href="https://click.a.example/ls/click?upn=u001.Qk9x">Sign in to Acme</a>',
            "magic_sign_in",
            "sign-in word 'Sign in' on a click-tracking link (destination hidden)",
        ),
        ('<a href="https://a.example/login">Log in</a>', "other", "sign-in word 'login' but no token: a sign-in page"),
        ('<a href="https://a.example/blog/2026">Read more</a>', "other", "no verify, sign-in, reset or unsubscribe words"),
        ('<a href="https://a.example/u?id=1">Unsubscribe</a>', "unsubscribe", "link text has 'Unsubscribe'"),
        ('<a href="https://a.example/newsletter/abbestellen">Hier</a>', "unsubscribe", "URL has 'abbestellen'"),
    ],
)
def test_each_link_is_classified_with_the_reason(html: str, kind: str, reason: str) -> None:
    [detail] = extract_link_details(None, html)
    assert (detail.kind, detail.reason) == (kind, reason)


def test_unsubscribe_links_are_classified_but_never_in_links() -> None:
    html = (
        '<a href="https://a.example/unsubscribe?u=1">Unsubscribe</a>'
        '<a href="https://a.example/verify?t=1">Verify</a>'
        '<a href="https://a.example/email-preferences">Preferences</a>'
        '<a href="https://a.example/optout">Opt out</a>'
    )
    details = extract_link_details(None, html)
    assert [(d.url, d.kind) for d in details] == [
        ("https://a.example/verify?t=1", "verify"),
        ("https://a.example/unsubscribe?u=1", "unsubscribe"),
        ("https://a.example/email-preferences", "unsubscribe"),
    ]  # at most two unsubscribe links, after the others
    assert extract_links(None, html) == ["https://a.example/verify?t=1"]


def test_link_details_are_plain_data_with_the_wrapper_named() -> None:
    wrapped = "https://www.google.com/url?q=https://a.example/confirm?k%3D1&amp;sa=D"
    [detail] = extract_link_details(None, f'<p>One more step.</p><a href="{wrapped}">Confirm   your\n address</a>')
    assert detail.as_dict() == {
        "url": "https://a.example/confirm?k=1",
        "kind": "verify",
        "reason": "URL has 'confirm'",
        "text": "Confirm your address",
        "unwrapped_from": "google_redirect",
    }


# --- the fast paths match what the plain algorithm finds ------------------------------------------


def _reference_mask(text: str) -> str:
    """The decoy masking as first written: every pattern case-insensitively over the whole text,
    in order, each seeing what the earlier ones blanked. The module's fast version (lowered text,
    digit-anchored and gated passes) must blank exactly the same characters."""
    import re

    from mam_mcp import extract

    def blanks(match: re.Match[str]) -> str:
        return re.sub(r"[^\n]", " ", match.group(0))

    text = extract._LONG_TOKEN.sub(blanks, text[: extract._MAX_SCANNED_CHARS])
    for pattern in extract._DECOYS:
        text = pattern.sub(blanks, text)
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if extract._ADDRESS_LINE.search(line):
            lines[i] = " " * len(line)
            if i + 1 < len(lines) and extract._POSTCODE_CITY_LINE.match(lines[i + 1]):
                lines[i + 1] = " " * len(lines[i + 1])
    return "\n".join(lines)


def _texts_in_every_case() -> list[str]:
    texts = []
    for path in sorted(CORPUS.glob("*.eml")):
        subject, text, html = _parts(path)
        for part in (subject, text, html_to_text(html) if html else None):
            if part:
                texts += [part, part.upper(), part.title(), part.swapcase()]
    # characters whose case is special: U+0130 lowers to two characters; Kelvin sign, long s, dotless i
    texts += ["\u0130STANBUL: your code is 482913, \u0130", "\u212a code 4821 \u017f 1234 \u0131 5555 JAN 3, 2026",
              "\u017fession 482913 code", "Ca\u0131l us 415 555 0100", "order\u017f 12345 \u017feat 12A"]
    return texts


def test_the_fast_decoy_masking_blanks_what_the_plain_algorithm_blanks() -> None:
    from mam_mcp.extract import _mask_decoys

    texts = _texts_in_every_case()
    assert len(texts) > 600
    for text in texts:
        masked = _mask_decoys(text)
        assert masked.text == _reference_mask(text), text[:200]
        assert len(masked.lower) == len(masked.text)


def test_every_decoy_gate_belongs_to_one_pattern() -> None:
    from mam_mcp import extract

    for start in extract._DECOY_NEEDS:
        owners = [p for p in extract._DECOYS if p.pattern.startswith(start)]
        assert owners, f"_DECOY_NEEDS names no decoy: {start[:40]!r}"


def test_html_without_a_web_link_is_not_parsed_for_links(monkeypatch: pytest.MonkeyPatch) -> None:
    from mam_mcp import extract

    spelled = '<a href="&#104;ttps://acme.example/v">Verify</a>'  # a character reference spells "http"
    assert [d.url for d in extract_link_details(None, spelled)] == ["https://acme.example/v"]
    parsed: list[str] = []
    monkeypatch.setattr(extract, "_links_in_html", lambda html: parsed.append(html) or [])
    extract_link_details(None, "<p>Your code is <b>482913</b>.</p>")
    assert parsed == []
    extract_link_details(None, spelled)
    extract_link_details(None, '<a href="HTTPS://ACME.EXAMPLE/verify">Verify</a>')
    assert len(parsed) == 2


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("Your P\u0131N: 482913", "482913"),  # dotless i: a case-insensitive match of PIN, as before
        ("Ver\u0131fication: 482913", "482913"),
        ("\u017fession 482913 code", None),  # long s: "session 482913" is a labelled number, not a code
        ("Code: 1234 \u017ft", None),
    ],
)
def test_letters_that_match_case_insensitively_count_as_their_latin_letter(text: str, code: str | None) -> None:
    assert extract_code(None, text) == code


def test_a_link_with_a_tab_in_its_scheme_is_still_found() -> None:
    # URL parsing drops tabs and line breaks anywhere in a URL: "ht\ttp://" is an http link
    details = extract_link_details(None, '<a href="ht\ttp://acme.example/verify">Verify</a>')
    assert [(d.url, d.kind) for d in details] == [("ht\ttp://acme.example/verify", "verify")]
