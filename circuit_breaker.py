"""A tiny circuit breaker for optional dependencies (Redis) that must never fail a request."""

from __future__ import annotations

import logging
import time

logger = logging.getLogger(__name__)


class CircuitBreaker:
    """Open for `retry_interval` seconds after a failure; logs once per outage, not per call."""

    def __init__(self, name: str, retry_interval: float) -> None:
        self._name = name
        self._retry_interval = retry_interval
        self._open_until = 0.0
        self._down = False

    def allows(self) -> bool:
        return time.monotonic() >= self._open_until

    def failed(self, exc: BaseException) -> None:
        self._open_until = time.monotonic() + self._retry_interval
        if not self._down:
            self._down = True
            logger.warning("%s unavailable, degrading: %s", self._name, type(exc).__name__)

    def succeeded(self) -> None:
        if self._down:
            self._down = False
            logger.info("%s available again", self._name)
