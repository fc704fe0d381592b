"""Raw sources stored without a second copy of the body (schema version 5).

An inbound message's raw source is kept byte for byte (`GET .../raw`). When its body is exactly
the message's `plain_body` encoded as UTF-8, the row keeps only the bytes before it and
`tail='plain_body'`; reading joins them again. The split is made only when the join gives the
raw source back exactly, so it is lossless by construction; otherwise the whole source is kept.
"""

from __future__ import annotations

__all__ = ["TAIL_PLAIN_BODY", "join_source", "split_source"]

TAIL_PLAIN_BODY = "plain_body"


def split_source(raw: bytes, plain_body: str | None) -> tuple[bytes, str | None]:
    """(bytes to store, tail): the head and TAIL_PLAIN_BODY when raw ends with the encoded plain body."""
    if not plain_body:
        return raw, None
    try:
        body = plain_body.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates from a broken charset: keep the whole source
        return raw, None
    if len(body) < len(raw) and raw.endswith(body):
        return raw[: len(raw) - len(body)], TAIL_PLAIN_BODY
    return raw, None


def join_source(stored: bytes, tail: str | None, plain_body: str | None) -> bytes:
    """The raw source again, from what `split_source` stored and the message's plain body."""
    if tail is None:
        return stored
    if tail != TAIL_PLAIN_BODY or plain_body is None:
        raise ValueError(f"raw source tail {tail!r} cannot be joined")
    return stored + plain_body.encode("utf-8")
