"""Finding people to share with, and the caller's notification preferences."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from dependencies import CurrentUserID, ShareWriter, TaskStoreDep
from openapi_docs import error_responses
from services import people as people_service
from sharing_models import (
    NotificationPreferences,
    NotificationPreferencesUpdate,
    UserRef,
    UserSearch,
)

users_router = APIRouter(prefix="/users", tags=["users"], responses=error_responses(401, 429, 503))
# Preferences are the account's: a personal API token is refused (403), as on /users/me.
notifications_router = APIRouter(
    prefix="/notifications", tags=["notifications"], responses=error_responses(401, 403, 429, 503)
)


@users_router.get("/search", response_model=list[UserRef], responses=error_responses(403, 422))
async def search_users(
    search: Annotated[UserSearch, Query()], store: TaskStoreDep, user_id: ShareWriter
) -> list[UserRef]:
    """Users whose name starts with the query (any case): id and username, never an email."""
    return await people_service.search_users(store, user_id=user_id, search=search)


@notifications_router.get("/preferences", response_model=NotificationPreferences)
async def get_preferences(store: TaskStoreDep, user_id: CurrentUserID) -> NotificationPreferences:
    """Which emails the caller gets."""
    return await people_service.get_preferences(store, user_id=user_id)


@notifications_router.patch(
    "/preferences",
    response_model=NotificationPreferences,
    responses=error_responses(400, 413, 422),
)
async def update_preferences(
    data: NotificationPreferencesUpdate, store: TaskStoreDep, user_id: CurrentUserID
) -> NotificationPreferences:
    """Turn kinds of email on or off (only those sent change)."""
    return await people_service.update_preferences(store, user_id=user_id, changes=data.changes())
