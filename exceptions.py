"""Domain errors, each carrying its HTTP status, and the one place they become responses.

Every error body has the shape `{"error": "<title>", "message": "<sentence>", ...}`.
"""

from __future__ import annotations

import logging
import re
from http import HTTPStatus
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from outages import database_unavailable, sqlstate

logger = logging.getLogger(__name__)

_HTTP_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}


class AppError(Exception):
    status_code: ClassVar[int] = 500
    title: ClassVar[str] = "Internal Server Error"
    headers: ClassVar[dict[str, str]] = {}

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra


class BadRequestError(AppError):
    status_code = 400
    title = "Bad Request"


class ResourceNotFoundError(AppError):
    """A user, share or comment that does not exist (tasks and files have their own)."""

    status_code = 404
    title = "Not Found"


class ForbiddenError(AppError):
    """The caller may see the thing but not do this to it (a comment they did not write)."""

    status_code = 403
    title = "Forbidden"


class AuthenticationError(AppError):
    status_code = 401
    title = "Unauthorized"
    headers: ClassVar[dict[str, str]] = {"WWW-Authenticate": "Bearer"}


class InvalidCredentialsError(AuthenticationError):
    def __init__(self) -> None:
        message = "Incorrect username or password"
        # error_description (RFC 6749 5.2) is what Swagger UI's Authorize dialog shows.
        super().__init__(message, error_description=message)


class InvalidTokenError(AuthenticationError):
    def __init__(self, reason: str = "Could not validate credentials") -> None:
        super().__init__(reason)


class InsufficientScopeError(AppError):  # a personal API token outside its scopes (RFC 6750)
    status_code = 403
    title = "Insufficient Scope"
    headers: ClassVar[dict[str, str]] = {"WWW-Authenticate": 'Bearer error="insufficient_scope"'}

    def __init__(self, scope: str) -> None:
        super().__init__(f"This token does not allow it (needs {scope})", scope=scope)


class WrongPasswordError(BadRequestError):
    def __init__(self) -> None:
        super().__init__("The current password is not correct")


class InvalidAccountTokenError(BadRequestError):  # unknown, used, expired: one answer
    def __init__(self) -> None:
        super().__init__("The token is invalid, used or expired")


class CredentialNotFoundError(ResourceNotFoundError):
    def __init__(self, kind: str, item_id: int) -> None:  # a session or a personal token
        super().__init__(f"{kind.capitalize()} with ID {item_id} not found", id=item_id)


class MetricsAuthError(AuthenticationError):
    def __init__(self) -> None:
        super().__init__("GET /metrics needs the metrics bearer token")


class TaskNotFoundError(AppError):
    status_code = 404
    title = "Task Not Found"

    def __init__(self, task_id: int) -> None:
        super().__init__(f"Task with ID {task_id} not found", task_id=task_id)


class TaskAccessDeniedError(ForbiddenError):
    def __init__(self, task_id: int) -> None:
        super().__init__(f"You do not have access to task {task_id}", task_id=task_id)


class TagNotFoundError(AppError):
    status_code = 404
    title = "Tag Not Found"

    def __init__(self, task_id: int, tag: str) -> None:
        super().__init__(f"Task {task_id} has no tag '{tag}'", task_id=task_id, tag=tag)


class TooManyTagsError(AppError):
    status_code = 422
    title = "Too Many Tags"

    def __init__(self, task_id: int, limit: int) -> None:
        super().__init__(f"A task can have at most {limit} tags", task_id=task_id, limit=limit)


class PreconditionFailedError(AppError):
    status_code = 412
    title = "Precondition Failed"

    def __init__(self, task_id: int) -> None:
        super().__init__(
            f"Task {task_id} has changed since the version in If-Match; fetch it and retry",
            task_id=task_id,
        )


class ConflictError(AppError):
    status_code = 409
    title = "Conflict"


class AlreadyVerifiedError(ConflictError):
    def __init__(self) -> None:
        super().__init__("The email address is already verified")


class DuplicateUserError(ConflictError):
    def __init__(self, field: str) -> None:
        super().__init__(f"A user with that {field} already exists", field=field)


class AttachmentNotFoundError(AppError):
    status_code = 404
    title = "File Not Found"

    def __init__(self, file_id: int) -> None:
        super().__init__(f"File with ID {file_id} not found", file_id=file_id)


class AttachmentAccessDeniedError(ForbiddenError):
    def __init__(self, file_id: int) -> None:
        super().__init__(f"You do not have access to file {file_id}", file_id=file_id)


class InvalidUploadError(AppError):
    """The multipart body has no usable `file` part (the original answered 422 here too)."""

    status_code = 422
    title = "Validation Error"

    def __init__(self, message: str) -> None:
        super().__init__(message, field="file")


class PayloadTooLargeError(AppError):
    status_code = 413
    title = "Payload Too Large"

    def __init__(self, limit: int) -> None:
        super().__init__(f"The file is larger than the limit of {limit} bytes", limit=limit)


class UnsupportedMediaTypeError(AppError):
    status_code = 415
    title = "Unsupported Media Type"


class StorageError(AppError):
    """The file store answered with an error."""

    status_code = 502
    title = "Bad Gateway"

    def __init__(self, message: str = "The file store failed; try again later") -> None:
        super().__init__(message)


class StorageUnavailableError(StorageError):
    """The file store could not be reached in time."""

    status_code = 503
    title = "Service Unavailable"
    headers: ClassVar[dict[str, str]] = {"Retry-After": "5"}

    def __init__(self, message: str = "The file store is unavailable; try again shortly") -> None:
        super().__init__(message)


class RateLimitExceededError(AppError):
    """A rate limit is spent; the headers (Retry-After, X-RateLimit-*) come from the limiter."""

    status_code = 429
    title = "Too Many Requests"

    def __init__(self, limit: str) -> None:
        super().__init__(f"Rate limit exceeded: {limit}. Try again later.")


class InvalidIdempotencyKeyError(AppError):
    status_code = 422
    title = "Invalid Idempotency Key"

    def __init__(self, max_length: int) -> None:
        super().__init__(f"Idempotency-Key must be 1 to {max_length} printable ASCII characters")


class IdempotencyKeyReusedError(AppError):
    status_code = 422
    title = "Idempotency Key Reused"

    def __init__(self) -> None:
        super().__init__("This Idempotency-Key was used with a different request")


class RequestInProgressError(AppError):
    status_code = 409
    title = "Request In Progress"

    def __init__(self) -> None:
        super().__init__(
            "A request with this Idempotency-Key is still being processed; retry later"
        )


class InsufficientStorageError(StorageError):
    """The file store has no room left (a full disk or an exhausted quota)."""

    status_code = 507
    title = "Insufficient Storage"

    def __init__(self, message: str = "The file store is full; try again later") -> None:
        super().__init__(message)


class ServiceUnavailableError(AppError):
    status_code = 503
    title = "Service Unavailable"
    headers: ClassVar[dict[str, str]] = {"Retry-After": "5"}


def error_response(
    status_code: int,
    title: str,
    message: str,
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """The standard error body. Errors are never cached by clients or proxies."""
    body = {"error": title, "message": message, **extra}
    response = JSONResponse(jsonable_encoder(body), status_code=status_code, headers=headers)
    response.headers["Cache-Control"] = "no-store"
    return response


def _validation_detail(exc: RequestValidationError) -> list[dict[str, Any]]:
    # The rejected input is not echoed back: it may be a password or megabytes of text.
    return [
        {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type", "")}
        for err in exc.errors()
    ]


async def _app_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return error_response(
        exc.status_code, exc.title, exc.message, headers=dict(exc.headers), **exc.extra
    )


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(
        422,
        "Validation Error",
        "The request is not valid; see detail",
        detail=_validation_detail(exc),
    )


def _allowed_methods(app: FastAPI, path: str) -> list[str]:
    """Every method the API documents for `path`; a literal path beats a templated one
    (`/tasks/stats` is not `/tasks/{task_id}`)."""
    matches: list[tuple[int, list[str]]] = []
    for template, operations in app.openapi()["paths"].items():
        pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, path):
            methods = [m.upper() for m in operations if m.upper() in _HTTP_METHODS]
            matches.append((template.count("{"), methods))
    if not matches:
        return []
    fewest = min(params for params, _ in matches)
    return sorted({m for params, methods in matches if params == fewest for m in methods})


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = HTTPStatus(exc.status_code)
    message = exc.detail if isinstance(exc.detail, str) else status.description
    if message == status.phrase:
        message = f"{status.description}."
    headers = dict(exc.headers) if exc.headers else {}
    if exc.status_code == 405:
        # Starlette names only the first route it matched; list them all (RFC 9110 §15.5.6).
        allowed = _allowed_methods(request.app, request.url.path)
        if allowed:
            headers["Allow"] = ", ".join(allowed)
    return error_response(exc.status_code, status.phrase, message, headers=headers or None)


def internal_error_response() -> JSONResponse:
    return error_response(500, "Internal Server Error", "An unexpected error occurred")


# PostgreSQL's serialization failure and deadlock: a transient clash, safe for the client to retry.
_RETRYABLE_SQLSTATES = {"40001", "40P01"}


def database_unavailable_response(exc: BaseException) -> JSONResponse:
    logger.error("database unavailable: %s", type(exc).__name__)
    return error_response(
        503,
        ServiceUnavailableError.title,
        "The database is unavailable; try again shortly",
        headers=dict(ServiceUnavailableError.headers),
    )


def unhandled_error_response(exc: BaseException) -> JSONResponse:
    """The answer to an exception no handler took: 503 for an outage, else a logged 500.
    Also used by the outermost middleware for what escapes the app's own handling."""
    if isinstance(exc, AppError):
        return error_response(
            exc.status_code, exc.title, exc.message, headers=dict(exc.headers), **exc.extra
        )
    if database_unavailable(exc):
        return database_unavailable_response(exc)
    logger.error("unhandled error", exc_info=exc)
    return internal_error_response()


async def _unexpected_error(_: Request, exc: Exception) -> JSONResponse:
    return unhandled_error_response(exc)


async def _dbapi_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DBAPIError)
    if sqlstate(exc) in _RETRYABLE_SQLSTATES:
        logger.warning("concurrent update clash: %s", sqlstate(exc))
        return error_response(
            409, "Conflict", "A concurrent update got in the way; retry the request"
        )
    return unhandled_error_response(exc)


def register_exception_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(DBAPIError, _dbapi_error)
    # Outages that are not DB-API errors, named so that they are answered inside the app (a
    # handler for Exception runs in Starlette's outermost layer, which re-raises afterwards).
    outages: tuple[type[Exception], ...] = (
        PoolTimeoutError,
        DisconnectionError,
        OSError,
        ExceptionGroup,
    )
    for outage in outages:
        app.add_exception_handler(outage, _unexpected_error)
    app.add_exception_handler(Exception, _unexpected_error)
