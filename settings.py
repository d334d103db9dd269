"""Application settings: the one place that reads the environment.

Every field maps to an upper-case environment variable of the same name (see `.env.example`).
With no environment at all the app runs on embedded defaults: a SQLite file, an in-process cache
and rate-limit store, and a local upload folder.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

logger = logging.getLogger(__name__)

MIN_SECRET_KEY_BYTES = 32
DATABASE_URL_FORMS = "postgresql://user:pass@host:5432/db or sqlite:///path/to/file.db"
# Settings whose value an error message must not repeat (secrets, or URLs that may hold one).
_UNQUOTED = {"secret_key", "smtp_password", "metrics_token", "database_url", "redis_url"}

Environment = Literal["development", "test", "production"]
# Extensions whose content the upload check can verify (see services/file_types.py).
SUPPORTED_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".pdf", ".txt", ".doc", ".docx")
LimitString = Annotated[str, Field(pattern=r"^\d+\s*(/|per)\s*\d*\s*[a-z]+$")]


@dataclass(frozen=True, slots=True)
class HashCost:
    """argon2id's cost: ARGON2_TIME_COST passes over ARGON2_MEMORY_KIB of memory."""

    time_cost: int
    memory_kib: int


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    environment: Environment = "development"
    app_version: str = "1.0.0"

    # Auth
    secret_key: SecretStr | None = None
    secret_key_file: Path = Path(".secret_key")
    access_token_expire_minutes: int = Field(default=30, ge=1, le=60 * 24 * 30)
    # Refresh tokens (one per login session, rotated on every use) live this long unused.
    refresh_token_expire_days: int = Field(default=30, ge=1, le=365)
    # argon2id's cost for new password hashes (RFC 9106's second recommendation by default).
    # Tests and the benchmark use ARGON2_TIME_COST=1, ARGON2_MEMORY_KIB=64 for speed.
    argon2_time_cost: int = Field(default=3, ge=1, le=20)
    argon2_memory_kib: int = Field(default=65536, ge=64, le=4 * 1024 * 1024)
    # Where the API is reached from outside: links in reset and verification emails.
    public_url: str = Field(default="http://127.0.0.1:8000", pattern=r"^https?://[^\s]+$")

    # Database
    database_url: str = "sqlite:///./task_manager.db"
    db_pool_size: int = Field(default=10, ge=1)
    db_max_overflow: int = Field(default=10, ge=0)
    db_pool_timeout: float = Field(default=10.0, gt=0)
    db_connect_timeout: float = Field(default=5.0, gt=0)
    db_echo: bool = False

    # Redis: the stats cache and the rate limiter's shared counters
    redis_url: str | None = None
    redis_timeout: float = Field(default=0.25, gt=0)
    redis_retry_interval: float = Field(default=5.0, ge=0)
    redis_key_prefix: str = "tm:"
    stats_cache_ttl: int = Field(default=300, ge=1)
    # Per-process copies of Redis's stats entries (0: none, every read asks Redis).
    stats_near_cache_entries: int = Field(default=4096, ge=0)

    # Rate limits in `limits` syntax ("5/minute"); unset means the default named in
    # rate_limit_config.py. RATE_LIMIT_ENABLED=false turns limiting off for load tests.
    rate_limit_enabled: bool = True
    rate_limit_register: LimitString | None = None
    rate_limit_login: LimitString | None = None
    rate_limit_create_task: LimitString | None = None
    rate_limit_upload: LimitString | None = None
    rate_limit_password_reset: LimitString | None = None
    rate_limit_default: LimitString | None = None
    # Peers whose X-Forwarded-For is believed (IPs or CIDRs, comma-separated)
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # File attachments: local disk by default, S3 (credentials from the standard AWS chain)
    storage_backend: Literal["local", "s3"] = "local"
    upload_dir: Path = Path("uploads")
    s3_bucket_name: str | None = None
    aws_region: str | None = None
    aws_endpoint_url: str | None = None  # for S3-compatible stores (MinIO, Ceph, ...)
    s3_connect_timeout: float = Field(default=3.0, gt=0)
    s3_read_timeout: float = Field(default=20.0, gt=0)
    s3_max_attempts: int = Field(default=3, ge=1, le=10)
    max_upload_size: int = Field(default=10 * 1024 * 1024, ge=1)
    allowed_extensions: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(SUPPORTED_EXTENSIONS)
    )
    # Blobs no row references are deleted by `reconcile-storage` only once this old, so an
    # upload whose row is not committed yet is never taken for an orphan.
    storage_orphan_grace_seconds: int = Field(default=3600, ge=0)

    # Completion emails over SMTP; without SMTP_HOST they are logged instead of sent
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str = "Task Manager <noreply@localhost>"
    smtp_starttls: bool = True
    smtp_timeout: float = Field(default=10.0, gt=0)
    smtp_max_attempts: int = Field(default=3, ge=1, le=10)
    smtp_retry_backoff: float = Field(default=2.0, ge=0)
    # Share and comment notices go to verified addresses only; completion mail too once this is
    # on (off by default: the original API mailed every completion).
    email_require_verified: bool = False

    # Events (services/events.py): how long the change feed and the activity log keep them.
    event_retention_days: int = Field(default=30, ge=1, le=3650)

    # Jobs (jobs/): the worker runs inside the API process too, unless turned off (a deployment
    # that starts `python manage.py worker` processes of its own may turn it off).
    job_worker_in_process: bool = True
    job_concurrency: int = Field(default=4, ge=1, le=100)
    # A job whose worker sent no heartbeat for this long (killed, machine lost) is run again.
    job_stalled_seconds: int = Field(default=60, ge=4, le=3600)

    # Webhooks (services/webhooks.py): private, loopback and link-local targets (and http://)
    # are refused unless allowed (tests, self-hosting); a delivery waits this long for a 2xx;
    # failures are retried after these seconds, then doubling until the schedule's total
    # reaches about a day; an endpoint failing everything this many days is disabled.
    webhook_allow_private_targets: bool = False
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    webhook_retry_schedule: Annotated[list[int], NoDecode] = Field(
        default_factory=lambda: [5, 30, 120]
    )
    webhook_retry_horizon_seconds: int = Field(default=24 * 3600, ge=1)
    webhook_disable_after_days: float = Field(default=3.0, gt=0)

    # Request hardening
    max_request_body: int = Field(default=1024 * 1024, ge=1024)
    # Slow clients (server_protocol.py): seconds from connecting (or from the previous response,
    # on a kept-alive connection) until the request head is complete, and the longest pause
    # between two pieces of a body. Past either the connection is answered 408 and closed.
    client_header_timeout: float = Field(default=10.0, gt=0)
    client_body_timeout: float = Field(default=30.0, gt=0)
    idempotency_lease_seconds: float = Field(default=60.0, gt=0)

    # Operations endpoints. With METRICS_TOKEN set, /metrics needs `Authorization: Bearer
    # <token>`; without it /metrics is open outside production and 404 in production.
    # DOCS_ENABLED serves /docs, /redoc and /openapi.json; unset: everywhere but production.
    metrics_token: SecretStr | None = None
    docs_enabled: bool | None = None

    # Garbage collector: freeze the start-up heap and collect young objects less often
    # (see main._tune_gc; measured at 11-15 % of a worker's CPU untuned).
    gc_tuning: bool = True

    # Logging
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"

    @property
    def hash_cost(self) -> HashCost:
        return HashCost(self.argon2_time_cost, self.argon2_memory_kib)

    @property
    def serves_docs(self) -> bool:
        """Whether /docs, /redoc and /openapi.json are served (DOCS_ENABLED, else not in
        production)."""
        if self.docs_enabled is not None:
            return self.docs_enabled
        return self.environment != "production"

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        try:
            backend = make_url(value.replace("postgres://", "postgresql://", 1)).get_backend_name()
        except ArgumentError:
            raise ValueError(f"not a database URL; use {DATABASE_URL_FORMS}") from None
        if backend not in ("postgresql", "sqlite"):
            raise ValueError(f"{backend} is not supported; use {DATABASE_URL_FORMS}")
        return value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _valid_networks(cls, value: list[str]) -> list[str]:
        for network in value:
            ipaddress.ip_network(network, strict=False)
        return value

    @field_validator("webhook_retry_schedule", mode="before")
    @classmethod
    def _split_schedule(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("webhook_retry_schedule")
    @classmethod
    def _positive_delays(cls, value: list[int]) -> list[int]:
        if not value or any(delay < 1 for delay in value):
            raise ValueError("give one or more delays in seconds, each at least 1 (e.g. 5,30,120)")
        return value

    @field_validator("allowed_extensions", mode="before")
    @classmethod
    def _split_extensions(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list):
            # ".PDF", "pdf" and " .pdf " all mean ".pdf"
            stripped = [str(ext).strip().lower() for ext in value if str(ext).strip()]
            return [ext if ext.startswith(".") else f".{ext}" for ext in stripped]
        return value

    @field_validator("allowed_extensions")
    @classmethod
    def _verifiable_extensions(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(SUPPORTED_EXTENSIONS))
        if unknown:
            raise ValueError(
                f"cannot verify the content of {', '.join(unknown)}; "
                f"supported: {', '.join(SUPPORTED_EXTENSIONS)}"
            )
        return value

    @model_validator(mode="after")
    def _s3_needs_a_bucket(self) -> Settings:
        if self.storage_backend == "s3" and not self.s3_bucket_name:
            raise ValueError("S3_BUCKET_NAME must be set when STORAGE_BACKEND=s3")
        return self

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _production_needs_a_real_secret(self) -> Settings:
        if self.environment == "production":
            key = self.secret_key.get_secret_value() if self.secret_key else ""
            if len(key.encode()) < MIN_SECRET_KEY_BYTES:
                raise ValueError(
                    f"SECRET_KEY must be set to at least {MIN_SECRET_KEY_BYTES} bytes "
                    "when ENVIRONMENT=production; generate one with: "
                    "python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"
                )
        return self


class ConfigurationError(Exception):
    """A setting is wrong. Its message is one line naming the setting and the fix: entry points
    print it and exit non-zero instead of showing a traceback."""


def describe_errors(exc: ValidationError) -> str:
    """One line for all of a ValidationError's complaints, each led by the variable's name."""
    parts = []
    for error in exc.errors():
        message = error["msg"].removeprefix("Value error, ")
        if error["loc"]:
            field = str(error["loc"][0])
            shown = "" if field in _UNQUOTED else f"={error.get('input')!r}"
            parts.append(f"{field.upper()}{shown} is invalid: {message}")
        else:  # a rule across fields: its message names them
            parts.append(message)
    return "; ".join(parts)


@lru_cache
def get_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigurationError(
            f"configuration error: {describe_errors(exc)} (set in the environment or .env)"
        ) from None


def resolve_secret_key(settings: Settings) -> str:
    """Return SECRET_KEY, or outside production a random key kept in a git-ignored file.

    Keeping the generated key on disk means tokens survive a restart and every worker of one
    checkout signs with the same key.
    """
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value()
    path = settings.secret_key_file
    if path.exists():
        return path.read_text().strip()
    # Write a private temp file, then link it into place: concurrent workers starting together
    # all end up reading the one key that won the link.
    key = secrets.token_urlsafe(48)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    try:
        os.link(tmp, path)
    except FileExistsError:
        key = path.read_text().strip()
    else:
        logger.warning("SECRET_KEY not set: generated a random key and saved it to %s", path)
    tmp.unlink()
    return key
