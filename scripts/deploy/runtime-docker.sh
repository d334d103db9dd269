# shellcheck shell=bash
# Docker runtime for scripts/deploy/blue_green.sh (the EC2 host): each colour is a container of
# the release image, published on a loopback port only, so it is reachable through nginx alone.
#
# DEPLOY_IMAGE      image to deploy, tagged by commit SHA (ghcr.io/owner/repo:<sha>)
# DEPLOY_ENV_FILE   env file with the app's settings (DATABASE_URL, REDIS_URL, SECRET_KEY, ...)
# DEPLOY_CONTAINER  container name prefix
# DEPLOY_WORKERS    job worker containers started with each colour (default 1; 0: none, the
#                   API's in-process worker runs the jobs)

: "${DEPLOY_ENV_FILE:=/etc/task-manager/app.env}"
: "${DEPLOY_CONTAINER:=task-manager}"
: "${DEPLOY_WORKERS:=1}"

_container() { printf '%s-%s' "$DEPLOY_CONTAINER" "$1"; }

_require_image() {
  [[ -n "${DEPLOY_IMAGE:-}" ]] || die 1 "DEPLOY_IMAGE is required for the docker runtime"
}

runtime_migrate() {
  _require_image
  docker pull --quiet "$DEPLOY_IMAGE" >/dev/null
  log "migrating with $DEPLOY_IMAGE"
  docker run --rm --env-file "$DEPLOY_ENV_FILE" "$DEPLOY_IMAGE" migrate
}

runtime_start() {
  local colour="$1" port="$2"
  _require_image
  # Migrations already ran above; the container must not race another colour doing them again.
  docker run --detach --name "$(_container "$colour")" \
    --env-file "$DEPLOY_ENV_FILE" --env RUN_MIGRATIONS=false \
    --publish "127.0.0.1:$port:8000" \
    --restart unless-stopped --stop-timeout "$DEPLOY_STOP_TIMEOUT" \
    --log-opt max-size=10m --log-opt max-file=3 \
    "$DEPLOY_IMAGE" >/dev/null
  log "started $colour ($DEPLOY_IMAGE) on port $port"
  # The colour's job workers: they share the jobs table with the other colour's until it stops
  # (a stopped worker's running jobs are rerun by the others: README, "Jobs and the worker").
  local n
  for ((n = 1; n <= DEPLOY_WORKERS; n++)); do
    docker run --detach --name "$(_container "$colour")-worker-$n" \
      --env-file "$DEPLOY_ENV_FILE" --env WORKER_NAME="$colour-$n" \
      --restart unless-stopped --stop-timeout "$DEPLOY_STOP_TIMEOUT" \
      --log-opt max-size=10m --log-opt max-file=3 \
      "$DEPLOY_IMAGE" worker >/dev/null
  done
  log "started $DEPLOY_WORKERS job worker(s) for $colour"
}

runtime_alive() {
  [[ "$(docker inspect --format '{{.State.Running}}' "$(_container "$1")" 2>/dev/null)" == true ]]
}

runtime_stop() {
  local name worker
  name="$(_container "$1")"
  for worker in $(docker ps --all --quiet --filter "name=^$name-worker-"); do
    docker stop --time "$DEPLOY_STOP_TIMEOUT" "$worker" >/dev/null || true
    docker rm --force "$worker" >/dev/null || true
  done
  docker inspect "$name" >/dev/null 2>&1 || return 0
  # docker stop sends SIGTERM and waits --time seconds before SIGKILL.
  docker stop --time "$DEPLOY_STOP_TIMEOUT" "$name" >/dev/null || true
  docker rm --force "$name" >/dev/null || true
  log "stopped $1"
}

runtime_logs() {
  docker logs --tail 20 "$(_container "$1")" 2>&1 || true
}
