"""Service endpoints: root, health and version (never rate limited)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response

from dependencies import CacheDep, ReadEngineDep, SettingsDep, StorageDep, require_metrics_access
from metrics import metrics_response
from models import Health, Message, Version
from rate_limit_config import exempt
from services import health as health_service

router = APIRouter(tags=["service"])


@router.get("/", response_model=Message)
@exempt
async def root() -> Message:
    """Say the API is running."""
    return Message(message="Task Manager API", status="running")


@router.get("/health", response_model=Health, responses={503: {"model": Health}})
@exempt
async def health(
    engine: ReadEngineDep, cache: CacheDep, storage: StorageDep, settings: SettingsDep
) -> JSONResponse:
    """Readiness: 200 when the database and the file store can serve, 503 when not."""
    report = await health_service.check(engine, cache, storage, version=settings.app_version)
    status = 503 if report.status == "unavailable" else 200
    return JSONResponse(
        report.model_dump(), status_code=status, headers={"Cache-Control": "no-store"}
    )


@router.get("/metrics", include_in_schema=False, dependencies=[Depends(require_metrics_access)])
@exempt
async def metrics() -> Response:
    """Prometheus metrics (text exposition format); METRICS_TOKEN guards it."""
    return metrics_response()


@router.get("/version", response_model=Version)
@exempt
async def version(settings: SettingsDep) -> Version:
    """The running release."""
    return Version(version=settings.app_version)
