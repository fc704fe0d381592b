"""The argument types the LinkedIn tools share (short: every word here is paid for in every tools/list)."""

from typing import Annotated

from pydantic import AfterValidator, Field

from mam_mcp.client.linkedin_input import check_profile_ref, check_profile_url

__all__ = ["Id", "IntentDescription", "ProfileRef", "ProfileUrl", "SessionFor", "SessionId", "plain_id"]


def plain_id(value: str) -> str:
    if not value or len(value) > 128 or any(ch.isspace() or ch in "/?#" for ch in value):
        raise ValueError("not a valid id")
    return value


Id = Annotated[str, AfterValidator(plain_id)]
SessionId = Annotated[
    str | None, AfterValidator(plain_id), Field(description="Omit to auto-distribute.")
]
SessionFor = Annotated[
    str | None, AfterValidator(plain_id), Field(description="Omit to use the only connected account.")
]
IntentDescription = Annotated[
    str,
    Field(
        min_length=20,
        max_length=4000,
        description="Firing rule: who fires (role, company stage), what in a post counts, who must NOT "
        "(vendors, agencies, recruiters).",
    ),
]
ProfileUrl = Annotated[str, Field(max_length=300), AfterValidator(check_profile_url)]
ProfileRef = Annotated[
    str, Field(max_length=300, description="Profile URL, slug or ACoA id."), AfterValidator(check_profile_ref)
]
