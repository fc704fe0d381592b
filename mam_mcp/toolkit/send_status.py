"""What a send's status means, said plainly to the agent: one place for send_email, reply_to_email,
forward_email and send_draft (and the status hint on listed messages).

Local backend statuses (docs/contract.md): queued -> relaying -> sent | failed | unknown, plus
partial, delivered (local inbox) and captured (no relay). The hosted API reports sent, queued
and bounced; a status this module does not know is shown as it is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mam_mcp.client.models import SendResult

__all__ = ["STATUS_HINTS", "send_outcome_data", "send_outcome_text"]

STATUS_HINTS: dict[str, str] = {
    "queued": "Not sent yet: the backend retries on its own; do not send it again. "
    "Check list_messages(direction='outbound') for its status.",
    "relaying": "Being handed to the relay right now: check list_messages(direction='outbound') before doing anything else.",
    "unknown": "May have been delivered: check with the recipient before sending again.",
    "failed": "Not sent. Do not resend it unchanged: fix what the relay's answer names first.",
    "partial": "Delivered to some recipients, refused for others (the relay's answer names them): "
    "do not resend to everyone.",
    "captured": "Kept by the local backend, not sent anywhere: no SMTP relay is configured (MAM_SMTP_RELAY_URL).",
    "bounced": "A bounce report came back: the address did not take it.",
}

# Whether the message left: True, False, or None when nobody can know.
_LEFT: dict[str, bool | None] = {
    "sent": True, "delivered": True, "partial": True, "bounced": True,
    "queued": False, "relaying": None, "failed": False, "captured": False, "unknown": None,
}  # fmt: skip


def send_outcome_text(verb: str, result: SendResult) -> str:
    """One paragraph: what happened to the send and what the backend (and the agent) should do next."""
    status = result.status or "sent"
    ids = f"message {result.id}, thread {result.thread_id}"
    reply = f'the relay answered "{result.relay_reply}"' if result.relay_reply else ""
    if status == "queued" and result.relay_reply:
        return (
            f"QUEUED, NOT SENT YET ({ids}): {reply}. The backend tries again by itself"
            + (f" (next attempt {result.next_attempt_at})" if result.next_attempt_at else "")
            + (f" until {result.retry_until}, then marks it failed" if result.retry_until else "")
            + ". Do not send it again; check list_messages(direction='outbound') for its status."
        )
    if status == "unknown":
        said = f" ({result.relay_reply})" if result.relay_reply else ""
        return f"OUTCOME UNKNOWN ({ids}, status unknown){said}. {STATUS_HINTS['unknown']}"
    if status == "partial":
        return f"PARTLY SENT ({ids}, status partial): {reply or 'some recipients were refused'}. {STATUS_HINTS['partial']}"
    if status == "failed":
        return f"NOT SENT ({ids}, status failed): {reply or 'the relay did not take it'}. {STATUS_HINTS['failed']}"
    if status == "bounced":
        return f"{verb}, but it BOUNCED ({ids}, status bounced). {STATUS_HINTS['bounced']}"
    if status == "relaying":
        return f"IN PROGRESS ({ids}, status relaying). {STATUS_HINTS['relaying']}"
    return f"{verb} (status {status}). Message id {result.id}, thread {result.thread_id}."


def send_outcome_data(result: SendResult) -> dict[str, Any]:
    """The structured result of a send: ids, status, whether it left, and the relay's answer when there is one."""
    status = result.status or "sent"
    data: dict[str, Any] = {
        "id": result.id,
        "thread_id": result.thread_id,
        "status": result.status,
        "message_id": result.message_id,
        "sent": _LEFT.get(status, True),
    }
    for key in ("relay_reply", "next_attempt_at", "retry_until"):
        if value := getattr(result, key):
            data[key] = value
    if status in STATUS_HINTS and status != "captured":
        data["hint"] = STATUS_HINTS[status]
    return data
