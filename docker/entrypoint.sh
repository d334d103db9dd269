#!/bin/sh
# Container entrypoint.
#   serve    (default) migrate unless RUN_MIGRATIONS=false, then run the API in the foreground
#   migrate  alembic upgrade head, then exit (the blue-green deploy runs this before switching)
#   worker   run jobs until SIGTERM (`python manage.py worker`; PostgreSQL)
#   other    exec'd as given, e.g. `docker run IMAGE alembic current`
set -eu

migrate() {
  alembic upgrade head
}

case "${1:-serve}" in
  serve)
    if [ "${RUN_MIGRATIONS:-true}" != false ]; then
      migrate
    fi
    # exec: uvicorn becomes PID 1 and receives SIGTERM from `docker stop`. It stops accepting,
    # lets in-flight requests finish for up to GRACEFUL_TIMEOUT seconds (under Docker's 10 s
    # stop timeout), then exits. --no-proxy-headers: X-Forwarded-For is believed only from the
    # app's TRUSTED_PROXIES; server_protocol.py cuts off slow clients (CLIENT_*_TIMEOUT).
    exec uvicorn main:app \
      --host "${HOST:-0.0.0.0}" \
      --port "${PORT:-8000}" \
      --workers "${WEB_CONCURRENCY:-2}" \
      --no-proxy-headers \
      --http server_protocol:SlowClientProtocol \
      --timeout-graceful-shutdown "${GRACEFUL_TIMEOUT:-8}" \
      --log-config uvicorn-logging.json \
      --no-server-header
    ;;
  migrate)
    migrate
    ;;
  worker)
    # exec: the worker is PID 1 and gets docker stop's SIGTERM; it gives running jobs 5 s.
    exec python manage.py worker --name "${WORKER_NAME:-$(hostname)}"
    ;;
  *)
    exec "$@"
    ;;
esac
