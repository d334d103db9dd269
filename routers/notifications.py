"""Email verification."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from account_models import Notice, OpaqueToken, Verified, VerifyRequest
from dependencies import CurrentUser, JobsDep, SessionDep
from jobs.engine import defer
from openapi_docs import error_responses
from services import account_links

router = APIRouter(
    prefix="/notifications", tags=["notifications"], responses=error_responses(429, 503)
)
_VERIFY = error_responses(400, 422)


@router.post(
    "/send-verification",
    status_code=202,
    response_model=Notice,
    responses=error_responses(401, 403, 409),
)
async def send_verification(jobs: JobsDep, user: CurrentUser) -> Notice:
    """Email a link that verifies the caller's address (valid 24 hours); 409 if verified."""
    account_links.check_verifiable(user)
    await defer(jobs, "link_mail", user_id=user.id, purpose=account_links.VERIFY)
    return Notice(message="A verification link is on its way")


@router.post("/verify", response_model=Verified, responses={**_VERIFY, **error_responses(413)})
async def verify_email(body: VerifyRequest, session: SessionDep) -> Verified:
    """Verify an address with the token from its email."""
    await account_links.verify_email(session, token=body.token)
    return Verified()


@router.get("/verify", response_model=Verified, responses=_VERIFY)
async def verify_email_link(
    token: Annotated[OpaqueToken, Query()], session: SessionDep
) -> Verified:
    """Verify an address from the link in its email."""
    await account_links.verify_email(session, token=token)
    return Verified()
