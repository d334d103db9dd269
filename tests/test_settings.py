"""Settings: production safety, generated secrets, database URLs, bcrypt cost."""

from __future__ import annotations

import gc
import os
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from pydantic import SecretStr, ValidationError

from auth import hash_password
from db_config import normalize_database_url
from main import GC_THRESHOLDS
from settings import Settings, resolve_secret_key
from tests.conftest import client_for, make_user


def test_defaults_are_the_embedded_stack() -> None:
    settings = Settings(_env_file=None)
    assert settings.database_url.startswith("sqlite")
    assert settings.redis_url is None
    assert (settings.argon2_time_cost, settings.argon2_memory_kib) == (3, 65536)
    assert settings.rate_limit_enabled is True


@pytest.mark.parametrize("key", [None, "too-short"])
def test_production_refuses_missing_or_short_secret(key: str | None) -> None:
    with pytest.raises(ValidationError, match="SECRET_KEY"):
        Settings(
            _env_file=None,
            environment="production",
            secret_key=SecretStr(key) if key is not None else None,
        )


def test_production_accepts_a_long_secret() -> None:
    settings = Settings(_env_file=None, environment="production", secret_key=SecretStr("s" * 32))
    assert settings.secret_key == SecretStr("s" * 32)


def test_missing_secret_is_generated_once_and_kept(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, secret_key_file=tmp_path / ".secret_key")
    first = resolve_secret_key(settings)
    assert len(first) >= 32
    assert resolve_secret_key(settings) == first
    assert os.stat(tmp_path / ".secret_key").st_mode & 0o777 == 0o600


def test_environment_variables_configure_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RATE_LIMIT_LOGIN", "7/minute")
    monkeypatch.setenv("TRUSTED_PROXIES", "10.0.0.1, 192.168.0.0/16")
    monkeypatch.setenv("LOG_LEVEL", "debug")
    settings = Settings(_env_file=None)
    assert settings.rate_limit_login == "7/minute"
    assert settings.trusted_proxies == ["10.0.0.1", "192.168.0.0/16"]
    assert settings.log_level == "DEBUG"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("postgresql://u:p@db:5432/app", "postgresql+asyncpg://u:p@db:5432/app"),
        ("postgres://u:p@db/app", "postgresql+asyncpg://u:p@db/app"),
        ("postgresql+psycopg2://u@db/app", "postgresql+asyncpg://u@db/app"),
        ("postgresql://u@db/app?sslmode=require", "postgresql+asyncpg://u@db/app?ssl=require"),
        ("sqlite:///./task_manager.db", "sqlite+aiosqlite:///./task_manager.db"),
    ],
)
def test_database_url_gets_the_async_driver(raw: str, expected: str) -> None:
    assert normalize_database_url(raw).render_as_string(hide_password=False) == expected


def test_unsupported_database_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported"):
        normalize_database_url("mysql://u@db/app")


async def test_default_password_hash_is_argon2id_at_rfc_9106_cost() -> None:
    hashed = await hash_password("a-password", cost=Settings(_env_file=None).hash_cost)
    assert hashed.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert PasswordHasher().verify(hashed, "a-password")


async def test_gc_tuning_freezes_start_up_heap_and_is_undone_at_shutdown(
    app_factory: Any,
) -> None:
    before = gc.get_threshold()
    async with app_factory(gc_tuning=True) as app, client_for(app) as client:
        assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_freeze_count() > 0
        user = await make_user(client)
        assert (await client.get("/tasks", headers=user.headers)).status_code == 200
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
