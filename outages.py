"""Which errors mean "the database cannot serve now" (a 503 and a retry), not a bad request or a
bug: one classification for every database driver, used by the one error handler
(exceptions.py) and the last-resort answer of the request middleware."""

from __future__ import annotations

import errno
import socket

from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

# SQLSTATEs meaning the server cannot serve now, whatever the statement: class 08 (connection
# exception), class 53 (insufficient resources: too many connections, out of memory, disk full)
# and the operator interventions that end or refuse sessions: 57P01 admin shutdown, 57P02 crash
# shutdown, 57P03 cannot connect now (starting up, shutting down, recovering), 57P05 idle
# session timeout. 57014 (a cancelled statement) is not among them: it says nothing of the server.
_UNAVAILABLE_SQLSTATE_CLASSES = ("08", "53")
_UNAVAILABLE_SQLSTATES = {"57P01", "57P02", "57P03", "57P05"}
# Socket errors of a connect or a dropped connection (ConnectionError covers refused and reset).
_NETWORK_ERRNOS = {
    errno.ECONNREFUSED,
    errno.ECONNRESET,
    errno.ECONNABORTED,
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    errno.ENETDOWN,
    errno.ETIMEDOUT,
    errno.EPIPE,
}


def sqlstate(exc: DBAPIError) -> str | None:
    """The SQLSTATE a driver error carries (asyncpg's own or its cause's), if any."""
    cause = exc.orig.__cause__ if exc.orig is not None else None
    state = getattr(exc.orig, "sqlstate", None) or getattr(cause, "sqlstate", None)
    return state if isinstance(state, str) else None


def _network_error(exc: BaseException) -> bool:
    if isinstance(exc, ConnectionError | TimeoutError | socket.gaierror):
        return True
    if not isinstance(exc, OSError):
        return False
    # asyncio's connect to a host with several addresses (localhost: ::1 and 127.0.0.1) raises
    # one plain OSError, without an errno, when every address failed.
    return exc.errno in _NETWORK_ERRNOS or str(exc).startswith("Multiple exceptions:")


def database_unavailable(exc: BaseException) -> bool:
    """Whether `exc` means the database cannot serve now (503 and retry), not that the request
    or the code is wrong: refused, reset or dropped connections, a server starting up or
    shutting down, an exhausted pool. Drivers differ in the exception class they raise for the
    same event, so SQLSTATEs and socket errors decide, and the class only where it is all we get.
    """
    if isinstance(exc, DBAPIError):
        state = sqlstate(exc)
        if state is not None and (
            state[:2] in _UNAVAILABLE_SQLSTATE_CLASSES or state in _UNAVAILABLE_SQLSTATES
        ):
            return True
        # A disconnect SQLAlchemy detected; OperationalError is the DB-API's class for "the
        # database's operation failed" (SQLite: locked past busy_timeout, I/O error, cannot
        # open the file); InterfaceError, a connection the driver closed.
        return (
            exc.connection_invalidated
            or isinstance(exc, OperationalError | InterfaceError)
            or (exc.orig is not None and _network_error(exc.orig))
        )
    if isinstance(exc, PoolTimeoutError | DisconnectionError):
        return True  # every pooled connection busy for pool_timeout / a connection found dead
    if isinstance(exc, BaseExceptionGroup):
        return all(database_unavailable(inner) for inner in exc.exceptions)
    # A connect attempt fails outside SQLAlchemy's DB-API wrapping with the socket's own error.
    return _network_error(exc)
