"""One-time codes and verification links found in an email (for `wait_for_email`).

Pure functions, no I/O. `extract_code` finds the code a sign-up or login form asks for;
`extract_links` ranks the links an agent should open (verify / confirm / magic login) first,
unwrapped from mail-gateway redirects (`link_wrappers`); `extract_link_details` adds what each
is for (verify / magic_sign_in / reset / unsubscribe / other) and why. `html_to_text` turns an
HTML body into readable text (inscriptis, imported lazily).

How a code is found: numbers that are something else (dates, times, years, phone numbers,
prices, addresses, labelled order / invoice / ticket numbers, URLs, e-mail addresses, hex
colours) are blanked out first; the remaining candidates must stand near a code keyword
("code", "verification", "OTP", "PIN", ...) or alone on their own line in a mail that
mentions one. Codes of capitals (`QXWMTR`, `KQZ-WTX`) and word codes (`magenta-kiwi-2931`)
look like ordinary words, so they count only when a word naming a code labels them directly
("code: X", "code is X", "X is your code") or stands on the line above them. The subject wins
over the body, and a nearer keyword wins over a farther one.
"""

from __future__ import annotations

import html as html_entities
import re
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from mam_mcp.link_wrappers import unwrap_link

__all__ = ["LinkDetail", "extract_code", "extract_link_details", "extract_links", "html_to_text"]


# --- HTML to text ----------------------------------------------------------------------------


def html_to_text(html: str) -> str:
    """Readable text of an HTML body: no markup, styles or scripts; tables as spaced rows."""
    if not html or not html.strip():
        return ""
    # Lazy: inscriptis (and lxml) cost import time that plain-text mail never needs.
    from inscriptis import get_text  # type: ignore[import-untyped]
    from inscriptis.model.config import ParserConfig  # type: ignore[import-untyped]

    text = get_text(html, ParserConfig(display_links=False, display_images=False))
    text = text.replace("\u00a0", " ").replace("\u200b", "").replace("\u200c", "")
    lines = [line.rstrip() for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


# --- one-time codes --------------------------------------------------------------------------

_MONTH = (
    r"(?:jan(?:uary|uar|vier|v)?|feb(?:ruary|ruar|rero)?|f[ée]v(?:rier)?|mar(?:ch|s|zo)?|m[äa]rz|"
    r"apr(?:il)?|avr(?:il)?|abr(?:il)?|ma[iy]o?|jun(?:e|i|io)?|juin|jul(?:y|i|io)?|juil(?:let)?|"
    r"aug(?:ust)?|ao[uû]t|ago(?:sto)?|sep(?:t|tember|tembre|tiembre)?|oct(?:ober|obre|ubre)?|"
    r"okt(?:ober)?|nov(?:ember|embre|iembre)?|dec(?:ember)?|d[ée]c(?:embre)?|dez(?:ember)?|"
    r"dic(?:iembre)?|ene(?:ro)?|sept)\.?"
)
_US_STATES = (
    "AL|AK|AZ|AR|CA|CO|CT|DE|DC|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|NH|"
    "NJ|NM|NY|NC|ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY"
)
_CURRENCY = r"(?:[$€£¥₹]|USD|EUR|GBP|CHF|JPY|CAD|AUD|INR|SEK|NOK|DKK|PLN|euros?|dollars?|Euro)"
_AMOUNT = r"(?:\d{1,3}(?:[ \u00a0.,']\d{3})+(?:[.,]\d{1,2})?|\d+(?:[.,]\d{1,2})?)"
_LABELLED_VALUE = (
    r"(?:\s*(?:no\.?|nr\.?|n\.|number|nummer|num[ée]ro|n[úu]mero|id|n°|n\.?º|num\.?))?"
    r"(?:\s+(?:ending\s+in|ending|endet\s+auf|se\s+terminant\s+par|terminada\s+en))?"
    # on the same line: "your account:\n\n583920" introduces a code, it does not label one
    r"[ \t\u00a0]*[:.]?[ \t\u00a0]*(?:is\s+|ist\s+|est\s+|es\s+)?[A-Z0-9][A-Z0-9-]*\d[A-Z0-9-]*"
)
_COUNTED = (
    r"(?:points|pts|miles|credits|coins|stars|followers|views|likes|steps|calories|words|pages|files|"
    r"messages|photos|songs|seats|licenses|teams|companies|customers|downloads|punkte|meilen|"
    r"points|crédits|puntos|millas|créditos)"
)
_UNIT = (
    r"(?:%|percent|minutes?|mins?|hours?|hrs?|days?|seconds?|secs?|weeks?|months?|years?|"
    r"minuten|stunden|tagen?|sekunden|heures?|jours?|secondes?|minutos?|horas?|d[ií]as?|segundos?|"
    r"kb|mb|gb|px|pts?|points?|miles?|km|users?|members?|people|items?|orders?|" + _COUNTED + ")"
)
# Things a code is never part of; each match is blanked before candidates are looked for.
_DECOYS: tuple[re.Pattern[str], ...] = tuple(
    re.compile(p, re.IGNORECASE)
    for p in (
        r"(?:https?://|www\.)\S+",
        r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+",
        r"(?:[*•·x]{2,}|\bX{2,})[ \u00a0-]?\d{2,4}\b",  # masked card / account numbers: ****4821
        r"#[\w-]+",  # hex colours, issue / order numbers, hashtags
        r"(?:©|\(c\)|copyright)\s*\d{4}(?:\s*[-–]\s*\d{4})?",
        # dates: ISO, numeric, and with month names (en/de/fr/es)
        r"\b\d{4}[-/.]\d{1,2}[-/.]\d{1,2}\b",
        r"\b\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}\b",
        rf"\b{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}\b",
        rf"\b\d{{1,2}}(?:st|nd|rd|th)?\.?\s+(?:de\s+|of\s+)?{_MONTH}\s*,?\s+(?:de\s+)?\d{{4}}\b",
        rf"\b{_MONTH}\s+\d{{4}}\b",
        # times
        r"\b\d{1,2}[:h]\d{2}(?::\d{2})?(?:\s*(?:am|pm|a\.m\.|p\.m\.|uhr))?",
        r"\b\d{1,2}\s*(?:am|pm)\b",
        # phone numbers: international, (area) local, dashed / dotted NANP, labelled
        r"\+\d{1,3}[\s.-]?(?:\(\d{1,4}\)[\s.-]?)?\d{1,4}(?:[\s.-]?\d{2,4}){1,4}",
        r"\(\d{2,5}\)\s?\d{3,4}[\s.-]?\d{3,4}",
        r"\b\d{3}[.-]\d{3}[.-]\d{4}\b",
        (
            r"\b(?:tel|phone|call(?:\s+us)?|fax|mobile|hotline|telefon|t[ée]l[ée]phone|t[ée]l|tel[ée]fono|"
            r"llámanos|whatsapp)\b\.?:?\s*(?:at\s+|on\s+|unter\s+|au\s+|al\s+)?\+?\d[\d\s()./-]{5,}\d"
        ),
        # prices
        rf"(?<!\w){_CURRENCY}\s?{_AMOUNT}",
        rf"(?<![\d.,]){_AMOUNT}\s?{_CURRENCY}(?!\w)",
        # quantities with a unit, IP addresses
        rf"\b\d+(?:[.,]\d+)?\s*{_UNIT}(?!\w)",
        rf"\b\d[\d.,]*\s+[a-z]+\s+{_COUNTED}(?!\w)",  # 1000 bonus points, 2500 free credits
        r"\b\d{1,3}(?:\.\d{1,3}){3}\b",
        # US "CA 94105"
        rf"(?-i:\b(?:{_US_STATES})\s+\d{{5}}(?:-\d{{4}})?\b)",
        # labelled numbers: order / invoice / ticket / tracking / account ... and their translations
        r"\b(?:order|invoice|ticket|tracking|shipment|parcel|package|reference|ref|case|account|acct|"
        r"customer|member(?:ship)?|booking|reservation|transaction|receipt|request|session|client|"
        r"item|sku|serial|model|flight|room|seat|card|iban|vat|tax|policy|claim|total|amount|subtotal|"
        r"issue|pull\s+request|pr|build|version|release|ip|id|hrb|hra|ust-?id\w*|registration|company|"
        r"registered\s+in\s+\w+(?:\s+and\s+\w+)?|siret|siren|rcs|cif|nif|"
        r"betrag|"
        r"commande|facture|dossier|colis|montant|pedido|factura|cuenta|env[ií]o|referencia|importe|"
        r"ordine|fattura|encomenda|fatura|bestelling|factuur|beställning|faktura|"
        r"(?:zip|postal|post|promo|discount|coupon|voucher|gift|referral|error|status|country|area)"
        r"\s*code|postcode|zipcode|plz|gutscheincode|rabattcode|code\s+(?:promo|postal)|"
        r"c[oó]digo\s+(?:promocional|postal|de\s+descuento))" + _LABELLED_VALUE,
        # promo / discount codes written in letters: "Use promo code WELCOME", "Discount code: FALLSALE"
        (
            r"\b(?:promo(?:tional)?|discount|coupon|voucher|gift|referral|rabatt|gutschein|sconto)[\s-]*code\s*"
            r"[:.]?\s*(?:is\s+)?[A-Z][\w-]*|\bc(?:ode|ódigo|odigo)\s+(?:promo\w*|de\s+descuento)\s*[:.]?\s*[A-Z][\w-]*"
        ),
        # German compounds (Bestellnummer, Kundennummer, Sendungsnummer) match inside words
        r"(?:bestell|rechnung|auftrag|kunden|sendung|vorgang|konto)\w*" + _LABELLED_VALUE,
    )
)
# Street addresses: the whole line is blanked, and a following "10115 Berlin" line too.
_ADDRESS_LINE = re.compile(
    r"\b\d{1,5}[a-z]?\s+(?:[\w.'-]+\s+){0,3}(?:street|st|avenue|ave|road|rd|boulevard|blvd|"
    r"lane|ln|drive|dr|way|place|plaza|parkway|pkwy|court|ct)\b"
    r"|\b(?:suite|ste\.|floor|unit|apt\.?|pmb|p\.?\s?o\.?\s+box)\s+\d"
    r"|(?:straße|strasse|str\.|weg|platz|allee|gasse|damm|ring)\s+\d"
    r"|\b\d{1,4},?\s+(?:rue|avenue|boulevard|bd|place|allée|chemin|quai)\b"
    r"|\b(?:calle|c/|avenida|avda\.?|paseo|plaza)\s+[\w ]{1,40}?,?\s*\d",
    re.IGNORECASE,
)
_POSTCODE_CITY_LINE = re.compile(r"^\s*(?:[A-Z]{1,2}-)?\d{4,5}\s+\w", re.MULTILINE)

_CODE_WORDS = (
    r"code\b|c[óo]digo|codice|kod(?:en|u)?\b|passcode|\botp\b|\bpin\b|\btan\b|"
    r"コード|パスコード|ワンタイムパスワード|認証番号|暗証番号|验证码|驗證碼|校验码"
)
_KEYWORD = re.compile(
    _CODE_WORDS + r"|verif\w*|v[ée]rif\w*|one[- ]time|einmal\w*|token|2fa|two[- ]factor|zwei[- ]faktor|"
    r"mot\s+de\s+passe|contrase[ñn]a|clave",
    re.IGNORECASE,
)
# Letter and word codes look like ordinary words: only a word that names a code labels them,
# and not when it names another kind of code ("QR code: SCAN", "dress code: CASUAL").
_CODE_LABEL = re.compile(_CODE_WORDS + r"|\btoken\b", re.IGNORECASE)
_OTHER_CODE_QUALIFIER = re.compile(
    r"\b(?:source|qr|bar|dress|html|css|status|error|country|area|zip|postal|post|promo\w*|discount|coupon|"
    r"voucher|gift|referral|colou?r|hex|product|airport|currency|language|region|swift|bic|sort|tax|"
    r"morse|machine|program|embed|iso|rabatt|gutschein|sconto)[\s-]*$",
    re.IGNORECASE,
)
# "Use 482913 to sign in": weaker hints, trusted only right next to a digit code
_ACTION_WORDS = re.compile(
    r"sign(?:ing)?[- ]?in|log(?:ging)?[- ]?in|confirm\w*|enter|anmeld\w*|best[äa]tig\w*|eingeben|"
    r"connexion|connecter|saisi\w*|iniciar\s+sesi[óo]n|introduce",
    re.IGNORECASE,
)
_ACTION_WINDOW = 12
_ACTION_PENALTY = 40  # a real code keyword anywhere in its window wins
_NO_WORD_BEFORE = r"(?<![\w.,/:#+$€£@-])(?<!\d )(?<!\d\u00a0)"
_NO_WORD_AFTER = r"(?![\w/@]|[.,:-]\w|[ \u00a0]\d)"
_DIGITS = re.compile(_NO_WORD_BEFORE + r"(\d{4,8})" + _NO_WORD_AFTER)
# 483 921 / 483-921 / 4839 2156: the group separator is dropped (forms take digits only)
_GROUPED = re.compile(_NO_WORD_BEFORE + r"(\d{3}[ \u00a0-]\d{3}|\d{4}[ \u00a0-]\d{4})" + _NO_WORD_AFTER)
# 6 1 0 7 3 2: one digit per inline element or table cell, spaced apart by HTML-to-text conversion
_SPACED_DIGITS = re.compile(
    _NO_WORD_BEFORE + r"(?<!\d  )(?<!\d   )(\d(?: {1,3}\d){3,7})(?! {1,3}\d)" + _NO_WORD_AFTER
)
_ALNUM = re.compile(r"(?<![\w#/.@-])([A-Z0-9]{1,6}-[A-Z0-9]{1,6}|[A-Z0-9]{4,10})(?![\w/@]|[-.]\w)")

_LONG_TOKEN = re.compile(r"\S{41,}")
_MAX_SCANNED_CHARS = 30_000
_SENDER_TAGGED = re.compile(r"[A-Z]-(\d{4,8})")
# A year-like number, a letter code or a word code counts only when labelled this directly:
# "code: X", "code is X", "Ihr Code lautet X", "X is your code" (or alone below a label line).
_QUOTES = r"[\s\"'«»„“*]*"
_IS = r"(?:is|ist|est|es|è|é|är|er|jest|lautet|wynosi)\b"
_LABEL_BEFORE = re.compile(
    rf"{_QUOTES}(?:[:：=]{_QUOTES})?(?:{_IS}{_QUOTES}(?:[:：]{_QUOTES})?)?"
    # or a few words and then ":" or "is": "code de vérification : X", "código de acceso es X"
    rf"|(?:\s+[^\W\d_][\w'’]{{0,19}}){{1,3}}\s*(?:[:：=]{_QUOTES}(?:{_IS}{_QUOTES})?|{_IS}{_QUOTES}(?:[:：]{_QUOTES})?)",
    re.IGNORECASE,
)
_LABEL_AFTER = re.compile(
    r"[\"'»“*]?\s+(?:is\s+your|ist\s+dein|ist\s+ihr|est\s+votre|es\s+tu)(?:\s+\w+){0,2}\s+",
    re.IGNORECASE,
)
_WINDOW = {"digits": 80, "alnum": 40, "year": 40, "letters": 40, "words": 40}  # keyword to candidate
_PENALTY = {"alnum": 15, "letters": 20, "words": 20}  # a digit code at the same distance is likelier
_NEEDS_LABEL = frozenset({"year", "letters", "words"})
_MAX_LABEL_GAP = 80  # characters between a label and the code it labels
# a lowercase word code: magenta-kiwi-2931, brave-otter-lamp-river
_WORDS = re.compile(r"(?<![\w#/.@-])((?:[a-z]{2,12}|\d{2,6})(?:-(?:[a-z]{2,12}|\d{2,6})){1,5})(?![\w/@]|[-.]\w)")
# words that follow a label without being a code ("your code is BELOW", "code: single-use")
_NOT_CODES = frozenset(
    "below above here there sent ready valid invalid expired expires inside attached needed required "
    "enclosed included none null empty unknown new your this that the and for with from only once "
    "welcome hello thanks please enter copy paste share never always again now today soon "
    "unten oben hier gültig abgelaufen ci-dessous ici valide expiré abajo aquí válido caducado "
    "one two single time use multi first last next revoked disabled active inactive correct incorrect "
    "wrong missing pending used unused blocked locked changed updated reset sensitive".split()
)


@dataclass(frozen=True)
class _Candidate:
    value: str
    start: int
    end: int
    kind: str  # digits | alnum | year


def _for_lowered(pattern: re.Pattern[str]) -> re.Pattern[str]:
    """`pattern` for text already lowercased: its literal capitals lowered, compiled without
    IGNORECASE. Python's engine compares case-insensitively one character at a time, several times
    slower than plainly; lowering the text once and matching plainly finds the same spans (text and
    its lowercase have the same length: see `_lowercase`)."""
    source, out, i = pattern.pattern, [], 0
    if "(?-i:" in source or "\\N{" in source:
        raise ValueError("a case-sensitive group or named escape cannot be matched on lowered text")
    while i < len(source):
        if source[i] == "\\":  # escapes as written: \S is not \s
            out.append(source[i : i + 2])
            i += 2
        else:
            out.append(source[i].lower())
            i += 1
    return re.compile("".join(out), pattern.flags & ~re.IGNORECASE)


# Characters Python's case-insensitive matching takes for a Latin letter but str.lower() leaves
# alone (long s, dotless i), and the one that lowers to two characters (dotted capital I).
_CASE_FOLDS = str.maketrans({"\u017f": "s", "\u0131": "i", "\u0130": "i"})


def _lowercase(text: str) -> str:
    """`text` lowercased for the plain patterns: one character for one, so spans carry over, and
    every character IGNORECASE would match to a letter of a pattern lowered to that letter."""
    return text.translate(_CASE_FOLDS).lower()


# What a decoy needs in the lowered text to match at all: one of these strings (keyed by the start
# of the pattern's source; the patterns not named always run). Blanking only takes characters away,
# so a string the text lacks, every later pass lacks too: a pass skipped here would have found nothing.
_CURRENCIES = ("$", "€", "£", "¥", "₹", "usd", "eur", "gbp", "chf", "jpy", "cad", "aud", "inr", "sek", "nok",
               "dkk", "pln", "dollar")  # fmt: skip
_DECOY_NEEDS: dict[str, tuple[str, ...]] = {
    r"(?:https?://|www\.)": ("http", "www."),
    r"(?<![\w.+-])[\w.+-]+@": ("@",),
    r"#[\w-]+": ("#",),
    r"(?:©|\(c\)|copyright)": ("©", "(c)", "copyright"),
    rf"\b{_MONTH}": ("jan", "feb", "fév", "fev", "mar", "mär", "apr", "avr", "abr", "mai", "may", "jun", "jui",
                     "jul", "aug", "aou", "aoû", "ago", "sep", "oct", "okt", "nov", "dec", "déc", "dez", "dic",
                     "ene"),  # fmt: skip
    r"\+\d": ("+",),
    r"\(\d": ("(",),
    r"\b(?:tel|phone|": ("tel", "tél", "phone", "call", "fax", "mobile", "hotline", "llámanos", "whatsapp"),
    rf"(?<!\w){_CURRENCY}": _CURRENCIES,
    rf"(?<![\d.,]){_AMOUNT}\s?{_CURRENCY}": _CURRENCIES,
    r"\b(?:promo(?:tional)?|discount": ("code", "digo"),
}


def _needs(pattern: re.Pattern[str]) -> tuple[str, ...]:
    found = [needs for start, needs in _DECOY_NEEDS.items() if pattern.pattern.startswith(start)]
    if len(found) > 1:
        raise ValueError(f"two entries of _DECOY_NEEDS start decoy {pattern.pattern[:40]!r}")
    return found[0] if found else ()


# Each decoy pattern, what it needs, whether it runs on the lowered text (all but the case-sensitive
# ones), and whether it can only match where a run of digits starts (`\b\d...`): those are tried at
# such places alone instead of scanned along the whole text (one scan finds the places for all of them).
_DECOY_PASSES: tuple[tuple[re.Pattern[str], tuple[str, ...], bool, bool], ...] = tuple(
    (pattern, _needs(pattern), False, False)
    if "(?-i:" in pattern.pattern
    else (_for_lowered(pattern), _needs(pattern), True, pattern.pattern.startswith(r"\b\d"))
    for pattern in _DECOYS
)
_DIGITS_START = re.compile(r"(?<!\w)\d")  # where `\b\d` can match


def _matches_at(pattern: re.Pattern[str], text: str, starts: list[int]) -> list[tuple[int, int]]:
    """What `pattern.finditer(text)` finds, for a pattern that can only match at one of `starts`."""
    spans, end = [], 0
    for start in starts:
        if start >= end and (match := pattern.match(text, start)) is not None:
            spans.append(match.span())
            end = match.end()
    return spans


_ADDRESS_LINE_LOWERED = _for_lowered(_ADDRESS_LINE)
_KEYWORD_LOWERED = _for_lowered(_KEYWORD)
_CODE_LABEL_LOWERED = _for_lowered(_CODE_LABEL)
_OTHER_CODE_QUALIFIER_LOWERED = _for_lowered(_OTHER_CODE_QUALIFIER)
_ACTION_WORDS_LOWERED = _for_lowered(_ACTION_WORDS)


def _blank(text: str, spans: list[tuple[int, int]]) -> str:
    """Same-length blanks over `spans`, so positions and line breaks stay where they were."""
    parts, at = [], 0
    for start, end in spans:
        parts.append(text[at:start])
        parts.append("".join("\n" if ch == "\n" else " " for ch in text[start:end]))
        at = end
    parts.append(text[at:])
    return "".join(parts)


@dataclass(frozen=True, slots=True)
class _Masked:
    """A text with its decoys blanked (`text`), and the same lowercased (`lower`) for the
    case-insensitive patterns: one character for one, so a span in one is the span in the other."""

    text: str
    lower: str


def _mask_decoys(text: str) -> _Masked:
    # Codes sit early in a mail and never inside a 40+ character token; both caps keep
    # the patterns linear on giant newsletters and base64 blobs.
    text = text[:_MAX_SCANNED_CHARS]
    lower = _lowercase(text)
    spans = [m.span() for m in _LONG_TOKEN.finditer(text)]
    if spans:
        text, lower = _blank(text, spans), _blank(lower, spans)
    starts: list[int] | None = None
    present = lower  # before any blanking: what a pass needs is looked for here (see _DECOY_NEEDS)
    for pattern, needs, lowered, at_digits in _DECOY_PASSES:  # in order: each sees what the earlier left
        if needs and not any(needed in present for needed in needs):
            continue
        if at_digits:
            if starts is None:
                starts = [m.start() for m in _DIGITS_START.finditer(text)]
            spans = _matches_at(pattern, lower, starts)
        else:
            spans = [m.span() for m in pattern.finditer(lower if lowered else text)]
        if spans:
            text, lower = _blank(text, spans), _blank(lower, spans)
            starts = None
    lines, lower_lines = text.split("\n"), lower.split("\n")
    for i, line in enumerate(lower_lines):
        if _ADDRESS_LINE_LOWERED.search(line):
            lines[i] = lower_lines[i] = " " * len(line)
            if i + 1 < len(lines) and _POSTCODE_CITY_LINE.match(lines[i + 1]):
                lines[i + 1] = lower_lines[i + 1] = " " * len(lines[i + 1])
    return _Masked("\n".join(lines), "\n".join(lower_lines))


def _is_alnum_code(token: str) -> bool:
    chars = token.replace("-", "")
    digits = sum(c.isdigit() for c in chars)
    return 4 <= len(chars) <= 10 and digits >= 2 and digits < len(chars)


def _is_letter_code(token: str) -> bool:
    """Capitals with at most one digit (QXWMTR, KQZ-WTX), not a shouted word (BELOW, WELCOME)."""
    chars = token.replace("-", "")
    digits = sum(c.isdigit() for c in chars)
    return 4 <= len(chars) <= 10 and digits <= 1 and token.lower() not in _NOT_CODES


def _is_word_code(token: str) -> bool:
    """Two or more words and a number (magenta-kiwi-2931), or four or more words of 3+ letters."""
    parts = token.split("-")
    words = [p for p in parts if p.isalpha()]
    if any(p in _NOT_CODES for p in words) or sum(len(p) >= 3 for p in words) < 2:
        return False
    # without a number, three words are too often prose ("high-quality-service"): four or more
    return len(words) < len(parts) or (len(words) >= 4 and all(len(p) >= 3 for p in words))


def _candidates(masked: str) -> list[_Candidate]:
    found: list[_Candidate] = []
    taken: list[tuple[int, int]] = []
    for match in [*_SPACED_DIGITS.finditer(masked), *_GROUPED.finditer(masked)]:
        found.append(_Candidate(re.sub(r"\D", "", match.group(1)), match.start(1), match.end(1), "digits"))
        taken.append(match.span(1))
    for match in _DIGITS.finditer(masked):
        if any(s <= match.start(1) < e for s, e in taken):
            continue
        value = match.group(1)
        kind = "year" if len(value) == 4 and 1900 <= int(value) <= 2099 else "digits"
        found.append(_Candidate(value, match.start(1), match.end(1), kind))
        taken.append(match.span(1))
    for match in _ALNUM.finditer(masked):
        token = match.group(1)
        if any(s <= match.start(1) < e for s, e in taken):
            continue
        if _is_letter_code(token):
            found.append(_Candidate(token, match.start(1), match.end(1), "letters"))
            continue
        if not _is_alnum_code(token):
            continue
        tagged = _SENDER_TAGGED.fullmatch(token)  # G-482913: the form wants 482913
        if tagged:
            found.append(_Candidate(tagged.group(1), match.start(1), match.end(1), "digits"))
        else:
            found.append(_Candidate(token, match.start(1), match.end(1), "alnum"))
    for match in _WORDS.finditer(masked):
        if _is_word_code(match.group(1)):
            found.append(_Candidate(match.group(1), match.start(1), match.end(1), "words"))
    return found


def _alone_on_line(masked: str, cand: _Candidate) -> bool:
    line_start = masked.rfind("\n", 0, cand.start) + 1
    line_end = masked.find("\n", cand.end)
    line = masked[line_start : line_end if line_end >= 0 else len(masked)]
    return line.strip(" \t:.*\"'()[]»«") == masked[cand.start : cand.end]


def _keyword_distance(keywords: list[tuple[int, int]], cand: _Candidate) -> int | None:
    """Characters between the candidate and the nearest keyword before or after it."""
    # keywords come from finditer: sorted and non-overlapping, so ends are sorted too
    before = bisect_right(keywords, cand.start, key=lambda span: span[1])
    after = bisect_left(keywords, cand.end, key=lambda span: span[0])
    distances = []
    if before > 0:
        distances.append(cand.start - keywords[before - 1][1])
    if after < len(keywords):
        distances.append(keywords[after][0] - cand.end)
    return min(distances) if distances else None


def _labels_directly(masked: str, keywords: list[tuple[int, int]], cand: _Candidate) -> bool:
    """A keyword right before ("code: 1987", "code is 1987") or after ("1987 is your code")."""
    before = bisect_right(keywords, cand.start, key=lambda span: span[1])
    after = bisect_left(keywords, cand.end, key=lambda span: span[0])
    label_end = keywords[before - 1][1] if before > 0 else -_MAX_LABEL_GAP - 1
    label_start = keywords[after][0] if after < len(keywords) else cand.end + _MAX_LABEL_GAP + 1
    return bool(
        (cand.start - label_end <= _MAX_LABEL_GAP and _LABEL_BEFORE.fullmatch(masked[label_end : cand.start]))
        or (label_start - cand.end <= _MAX_LABEL_GAP and _LABEL_AFTER.fullmatch(masked[cand.end : label_start]))
    )


def _labelled_by_line_above(masked: str, labels: list[tuple[int, int]], cand: _Candidate) -> bool:
    """Alone on its line, below a line that names a code and introduces it ("Enter this code in the
    app:", "Your verification code"): a heading such as "SUPPORT" below "... the code we sent." is not."""
    if not _alone_on_line(masked, cand):
        return False
    above_end = masked.rfind("\n", 0, cand.start)
    while above_end > 0 and not masked[masked.rfind("\n", 0, above_end) + 1 : above_end].strip():
        above_end = masked.rfind("\n", 0, above_end)  # skip blank lines
    if above_end <= 0:
        return False
    above_start = masked.rfind("\n", 0, above_end) + 1
    line = masked[above_start:above_end].rstrip()
    in_line = [end for start, end in labels if above_start <= start and end <= above_end]
    return bool(in_line) and (line.endswith((":", "：")) or _LABEL_BEFORE.fullmatch(masked[in_line[-1] : above_end]) is not None)


def _shouted(masked: str, cand: _Candidate) -> bool:
    """Capitals followed by more capitals on the line are a shouted sentence, not a letter code."""
    return re.match(r"[?!.,]?[ \t]+[A-Z]{2,}\b", masked[cand.end : cand.end + 40]) is not None


def _best_code(part: _Masked, message_has_keyword: bool) -> tuple[int, int, str] | None:
    """(score, position, code) of the likeliest code in one decoy-masked text, or None."""
    masked, lower = part.text, part.lower
    candidates = _candidates(masked)
    if not candidates:
        return None
    keywords = [m.span() for m in _KEYWORD_LOWERED.finditer(lower)]
    labels: list[tuple[int, int]] | None = None  # found when a letter or word code needs them
    action_words: list[tuple[int, int]] | None = None  # found when a digit code is far from a keyword

    def near_action_word(cand: _Candidate) -> int | None:
        nonlocal action_words
        if action_words is None:
            action_words = [m.span() for m in _ACTION_WORDS_LOWERED.finditer(lower)]
        distance = _keyword_distance(action_words, cand)
        return distance if distance is not None and distance <= _ACTION_WINDOW else None

    best: tuple[int, int, str] | None = None
    for cand in candidates:
        distance = _keyword_distance(keywords, cand)
        window = _WINDOW[cand.kind]
        if cand.kind == "year" and not _labels_directly(masked, keywords, cand):
            continue
        if cand.kind in ("letters", "words"):
            if cand.kind == "letters" and _shouted(masked, cand):
                continue
            if labels is None:
                labels = [
                    m.span()
                    for m in _CODE_LABEL_LOWERED.finditer(lower)
                    if not _OTHER_CODE_QUALIFIER_LOWERED.search(lower[max(0, m.start() - 20) : m.start()])
                ]
            if not (_labels_directly(masked, labels, cand) or _labelled_by_line_above(masked, labels, cand)):
                continue
            distance = _keyword_distance(labels, cand)
        if distance is not None and distance <= window:
            score = distance
        elif cand.kind == "digits" and (action_distance := near_action_word(cand)) is not None:
            score = action_distance + _ACTION_PENALTY
        elif cand.kind not in _NEEDS_LABEL and message_has_keyword and _alone_on_line(masked, cand):
            score = window + 1
        elif cand.kind in ("letters", "words"):
            score = window + 1  # labelled by the line above, farther than the window
        else:
            continue
        score += _PENALTY.get(cand.kind, 0)
        ranked = (score, cand.start, cand.value)
        if best is None or ranked < best:
            best = ranked
    return best


def extract_code(subject: str | None, text: str | None, html: str | None = None) -> str | None:
    """The one-time code of a verification / login mail, or None.

    Digit codes have 4-8 digits; grouped digits (`483 921`, `483-921`, one digit per HTML
    cell) come back as digits only (`483921`) because that is what code fields accept, and
    so does a sender-tagged `G-482913`. Alphanumeric codes (`K7X-92Q`, `AB12CD`: upper case,
    at least two digits) come back as written, dash included, and only next to a code
    keyword. The subject is preferred, then the text part, then the HTML part.
    """
    text_parts = [_mask_decoys(part) for part in (subject, text) if part and part.strip()]
    has_keyword = any(_KEYWORD_LOWERED.search(part.lower) for part in text_parts)
    if has_keyword and (code := _first_code(text_parts, has_keyword)) is not None:
        return code  # the HTML part could only have added a keyword: no need to convert it
    html_text = html_to_text(html) if html else ""
    html_parts = [_mask_decoys(html_text)] if html_text else []
    if has_keyword:
        return _first_code(html_parts, has_keyword)
    html_has_keyword = any(_KEYWORD_LOWERED.search(part.lower) for part in html_parts)
    return _first_code(text_parts + html_parts, html_has_keyword)


def _first_code(masked_parts: list[_Masked], message_has_keyword: bool) -> str | None:
    for masked in masked_parts:
        best = _best_code(masked, message_has_keyword)
        if best is not None:
            return best[2]
    return None


# --- links -----------------------------------------------------------------------------------

_STRONG_LINK_WORDS = re.compile(
    r"verif|confirm|activat|activer|activar|aktivier|magic|validat|valider|reset|"
    r"email[-_]?confirmation|best(?:ä|ae|%c3%a4)tig|vérifi|v%c3%a9rifi|restablec|réinitialis|zurücksetz|"
    r"passwor[dt]|mot-de-passe",
    re.IGNORECASE,
)
_WEAK_LINK_WORDS = re.compile(
    r"log[-_ ]?in|sign[-_ ]?in|auth|token|otp|session|anmelden|connexion|se connecter|iniciar",
    re.IGNORECASE,
)
_UNSUBSCRIBE_WORDS = re.compile(
    r"unsubscribe|opt[-_ ]?out|email[-_ ]?preferences|/preferences|manage[-_ ]?(?:subscription|"
    r"notifications|preferences)|list-manage|abbestell|abmelden|d[ée]sinscri|d[ée]sabonn|"
    r"darse\s+de\s+baja|/baja|desuscrib|uitschrijven|avregistrer|disiscriv",
    re.IGNORECASE,
)
_PRIVACY_WORDS = re.compile(r"privacy|datenschutz|confidentialit|privacidad|cookie", re.IGNORECASE)
_DEMOTED_LINK_WORDS = re.compile(
    r"view\s+(?:it\s+)?in\s+(?:your\s+)?browser|web[-_ ]?version|/help|/support|/terms|/legal|"
    r"impressum|mentions-legales|contact|wasn'?t\s+you|not\s+you|did(?:n'?t|\s+not)\s+request|"
    r"secure\s+your\s+account|report\s+(?:this|it)|nicht\s+sie|pas\s+vous|no\s+fuiste",
    re.IGNORECASE,
)
_TRACKING_PIXEL = re.compile(
    r"/pixel|pixel\.(?:gif|png)|beacon|/track/open|/wf/open|/open\.(?:gif|png|php|aspx)", re.IGNORECASE
)
_IMAGE_PATH = re.compile(r"\.(?:png|jpe?g|gif|webp|svg|ico|bmp)$", re.IGNORECASE)
_SOCIAL_HOSTS = frozenset(
    {
        *("facebook.com", "fb.com", "twitter.com", "x.com", "t.co", "instagram.com", "linkedin.com"),
        *("youtube.com", "youtu.be", "tiktok.com", "pinterest.com", "reddit.com", "threads.net"),
        *("mastodon.social", "wa.me", "t.me", "discord.gg", "discord.com"),
    }
)
_TEXT_URL = re.compile(r"https?://[^\s<>\"'\[\]{}|\\^`]+", re.IGNORECASE)
_CONTEXT_CHARS = 120  # of text before a link that may say what it is for
_URL_TAIL = ".,;:!?'\")]>}*"


@dataclass(frozen=True)
class _Link:
    url: str
    anchor: str  # the link's text, or the words before a URL on its line in plain text
    nearby: str = ""  # text just before the link (the sentence that introduces a button)


class _AnchorCollector(HTMLParser):
    """Collects `<a href>` targets with their anchor text, and bare URLs in text nodes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[_Link] = []
        self._open: list[tuple[str, list[str], str]] = []
        self._recent_text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("a", "area"):
            href = dict(attrs).get("href")
            if href:
                self._open.append((html_entities.unescape(href).strip(), [], self._recent_text))

    def handle_endtag(self, tag: str) -> None:
        if tag in ("a", "area") and self._open:
            href, texts, nearby = self._open.pop()
            anchor = " ".join(" ".join(texts).split())[:_CONTEXT_CHARS]
            self.links.append(_Link(href, anchor, nearby))

    def handle_data(self, data: str) -> None:
        for _, texts, _ in self._open:
            if sum(map(len, texts)) < _CONTEXT_CHARS:
                texts.append(data[:_CONTEXT_CHARS])
        if not self._open:
            for match in _TEXT_URL.finditer(data):
                before = data[max(0, match.start() - _CONTEXT_CHARS) : match.start()]
                self.links.append(_Link(match.group(0), before, self._recent_text))
        recent = self._recent_text + " " + data[-_CONTEXT_CHARS:]
        self._recent_text = " ".join(recent.split())[-_CONTEXT_CHARS:]


def _links_in_html(html: str) -> list[_Link]:
    collector = _AnchorCollector()
    collector.feed(html)
    collector.close()
    return collector.links


def _may_hold_web_links(html: str) -> bool:
    """False when no http(s) link can come out of this HTML (every other kind is dropped): it says
    "http" nowhere, not even with tabs or line breaks inside (URL parsing drops those), and has no
    character reference that could spell it. Parsing is then skipped."""
    return "&" in html or "http" in html.lower().replace("\t", "").replace("\r", "").replace("\n", "")


def _links_in_text(text: str) -> list[_Link]:
    links = []
    for match in _TEXT_URL.finditer(text):
        window_start = max(0, match.start() - _CONTEXT_CHARS)  # bounded: long lines stay linear
        line_start = text.rfind("\n", window_start, match.start()) + 1 or window_start
        above = text[max(0, line_start - _CONTEXT_CHARS) : line_start]
        links.append(_Link(match.group(0), text[line_start : match.start()], above))
    return links


def _clean_url(url: str) -> str:
    url = url.strip()
    while url and url[-1] in _URL_TAIL:
        if url[-1] == ")" and url.count("(") >= url.count(")"):
            break
        url = url[:-1]
    return url


def _is_dropped(link: _Link) -> bool:
    """Links an agent never wants: not web, social networks, images, tracking pixels, privacy pages."""
    try:
        parts = urlsplit(link.url)
        host = (parts.hostname or "").lower().removeprefix("www.")
    except ValueError:  # "http://[::1": unreadable, never worth opening
        return True
    if parts.scheme.lower() not in ("http", "https") or not host:
        return True
    if _is_social(host) or _IMAGE_PATH.search(parts.path):
        return True
    if _TRACKING_PIXEL.search(f"{parts.path}?{parts.query}"):
        return True
    # only the words right before a plain-text URL name it ("... privacy. Confirm: <url>" is kept)
    return bool(_PRIVACY_WORDS.search(link.url) or _PRIVACY_WORDS.search(link.anchor[-40:]))


def _unsubscribe_reason(link: _Link) -> str | None:
    if match := _UNSUBSCRIBE_WORDS.search(link.url):
        return f"URL has '{_word_at(link.url, match)}'"
    if match := _UNSUBSCRIBE_WORDS.search(anchor := link.anchor[-40:]):
        return f"link text has '{_word_at(anchor, match)}'"
    return None


def _is_social(host: str) -> bool:
    return any(host == social or host.endswith("." + social) for social in _SOCIAL_HOSTS)


def _link_score(link: _Link) -> int:
    url = link.url.split("://", 1)[-1]
    score = 0
    score += 4 if _STRONG_LINK_WORDS.search(url) else 0
    score += 3 if _STRONG_LINK_WORDS.search(link.anchor) else 0
    score += 1 if _STRONG_LINK_WORDS.search(link.nearby) else 0
    score += 2 if _WEAK_LINK_WORDS.search(url) else 0
    score += 1 if _WEAK_LINK_WORDS.search(link.anchor) else 0
    if any(_DEMOTED_LINK_WORDS.search(part) for part in (link.url, link.anchor, link.nearby[-60:])):
        score -= 8
    return score


# --- what a link is for ----------------------------------------------------------------------

# Looked for in the URL (host, path, query) first, then in the link's text; the first hit decides.
_KIND_WORDS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "reset",
        re.compile(
            r"reset|forgot|recover|passwor[dt]|kennwort|mot[-_ ]de[-_ ]passe|/mdp\b|r[ée]initialis|"
            r"zur[üu]cksetz|zuruecksetz|restablec|contrase[ñn]a|senha|wachtwoord",
            re.IGNORECASE,
        ),
    ),
    (
        "verify",
        re.compile(
            r"verif|v[ée]rifi|v%c3%a9rifi|confirm|activat|activer|activar|aktivier|validat|valider|"
            r"best(?:ä|ae|%c3%a4)tig|bevestig|conferm|bekr[äa]fta",
            re.IGNORECASE,
        ),
    ),
    ("magic_sign_in", re.compile(r"magic|passwordless|(?:e-?mail|login|sign-?in)[-_ ]?link|loginwithemail", re.IGNORECASE)),
)
_SIGN_IN_WORDS = re.compile(
    r"log(?:ging)?[-_ ]?in|sign(?:ing)?[-_ ]?in|/auth(?:/|\b)|anmeld|connexion|se\s+connecter|"
    r"iniciar|acceso|accedi|entrar|inloggen|logga\s+in",
    re.IGNORECASE,
)
_TOKEN_PARAMS = frozenset(
    {"token", "t", "k", "key", "jeton", "code", "otp", "auth", "magic", "sig", "signature", "hash", "nonce"}
    | {"ticket", "login_token", "access_token", "auth_token"}
)
_TOKEN_SEGMENT = re.compile(r"(?=[A-Za-z0-9_-]*\d)(?=[A-Za-z0-9_-]*[A-Za-z])[A-Za-z0-9_-]{20,}")
# Sending services' click tracking: the destination is hidden behind an opaque id.
_CLICK_TRACKER = re.compile(
    r"^(?:click|clicks|links?|trk|track|tracking|email|go|url\d+)\.[^/]+\.[^/]+/"
    r"|/ls/click|/track/click|/wf/click|/c/[A-Za-z0-9]",
    re.IGNORECASE,
)
_OTHER_REASON = "no verify, sign-in, reset or unsubscribe words"
_REASON_WORD_CHARS = 30


def _token_in(url: str) -> str | None:
    """What in a URL looks like a one-time credential: a `token=`-like parameter or a long random segment."""
    parts = urlsplit(url)
    for name, value in parse_qsl(parts.query):
        if name.lower() in _TOKEN_PARAMS and len(value) >= 4:
            return f"parameter '{name}'"
    if any(_TOKEN_SEGMENT.fullmatch(segment) for segment in parts.path.split("/")):
        return "a long random path segment"
    return None


def _word_at(value: str, match: re.Match[str]) -> str:
    """The whole word (or URL part, dashes included) a match sits in: 'verify', 'reset-password'."""
    start, end = match.span()
    while start > 0 and end - start < _REASON_WORD_CHARS and (value[start - 1].isalnum() or value[start - 1] in "-_"):
        start -= 1
    while end < len(value) and end - start < _REASON_WORD_CHARS and (value[end].isalnum() or value[end] in "-_"):
        end += 1
    return value[start:end].strip("-_") or match.group(0)


def _kind_of(link: _Link) -> tuple[str, str]:
    """(kind, reason): verify | magic_sign_in | reset | other, and which words or URL parts decided it."""
    url = link.url.split("://", 1)[-1]
    for where, value in (("URL", url), ("link text", link.anchor)):
        for kind, pattern in _KIND_WORDS:
            if match := pattern.search(value):
                return kind, f"{where} has '{_word_at(value, match)}'"
    sign_in = _SIGN_IN_WORDS.search(url) or _SIGN_IN_WORDS.search(link.anchor)
    if sign_in is None:
        return "other", _OTHER_REASON
    word = sign_in.group(0).strip("/ ")
    if token := _token_in(link.url):
        return "magic_sign_in", f"sign-in word '{word}' and a token ({token})"
    if _CLICK_TRACKER.search(url):
        return "magic_sign_in", f"sign-in word '{word}' on a click-tracking link (destination hidden)"
    return "other", f"sign-in word '{word}' but no token: a sign-in page"


@dataclass(frozen=True)
class LinkDetail:
    """A link found in a mail: where it goes, what it is for and why we think so."""

    url: str  # the destination, unwrapped from Safe Links / Google / URL Defense / Link Protect
    kind: str  # verify | magic_sign_in | reset | unsubscribe | other
    reason: str  # the words or URL parts that decided the kind
    text: str  # the link's text (or the words before a plain-text URL), shortened
    wrapper: str | None = None  # the gateway that had wrapped it, if any

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"url": self.url, "kind": self.kind, "reason": self.reason, "text": self.text}
        if self.wrapper:
            data["unwrapped_from"] = self.wrapper
        return data


_DETAIL_TEXT_CHARS = 80
_UNSUBSCRIBE_LIMIT = 2


def _detail(link: _Link, wrapper: str | None, unsubscribe: str | None = None) -> LinkDetail:
    kind, reason = ("unsubscribe", unsubscribe) if unsubscribe else _kind_of(link)
    text = " ".join(link.anchor.split())[-_DETAIL_TEXT_CHARS:]
    return LinkDetail(link.url, kind, reason, text, wrapper)


def extract_link_details(text: str | None, html: str | None = None, *, limit: int = 5) -> list[LinkDetail]:
    """Up to `limit` distinct http(s) links ranked as `extract_links` ranks them, each with its kind
    and the reason for it; then up to two unsubscribe links (kind "unsubscribe").

    Wrapped links (Outlook Safe Links, Google `/url`, Proofpoint URL Defense, Barracuda Link
    Protect, Amazon SES click tracking) come back as their destination.
    """
    if limit <= 0:
        return []
    from_html = _links_in_html(html) if html and _may_hold_web_links(html) else []
    found = [*from_html, *(_links_in_text(text) if text else [])]
    ranked: dict[str, tuple[tuple[int, int], _Link, str | None]] = {}
    unsubscribe: dict[str, tuple[_Link, str | None, str]] = {}
    for order, link in enumerate(found):
        url, wrapper = unwrap_link(_clean_url(link.url))
        link = _Link(url, link.anchor, link.nearby)
        if not link.url or _is_dropped(link):
            continue
        if why := _unsubscribe_reason(link):
            unsubscribe.setdefault(link.url, (link, wrapper, why))
            continue
        rank = (-_link_score(link), order)
        if link.url not in ranked or rank < ranked[link.url][0]:
            ranked[link.url] = (rank, link, wrapper)
    kept = sorted(ranked.values(), key=lambda entry: entry[0])[:limit]
    details = [_detail(link, wrapper) for _, link, wrapper in kept]
    for link, wrapper, why in list(unsubscribe.values())[:_UNSUBSCRIBE_LIMIT]:
        details.append(_detail(link, wrapper, why))
    return details


def extract_links(text: str | None, html: str | None = None, *, limit: int = 5) -> list[str]:
    """Up to `limit` distinct http(s) links, verification-like first (verify, confirm,
    activate, magic, login, reset, ...), then the rest in document order.

    Links come from HTML `href`s (entities such as `&amp;` decoded) and from URLs in the
    text; wrapped links come back as their destination. Unsubscribe, privacy, social-network,
    image, tracking-pixel and non-http links (mailto:, tel:) are dropped.
    """
    return [d.url for d in extract_link_details(text, html, limit=limit) if d.kind != "unsubscribe"]
