#!/usr/bin/env bash
# Blue-green deploy of the Task Manager API behind nginx.
#
# Two colours (blue, green) listen on two loopback ports; nginx proxies to the live one through an
# upstream include file. A deploy runs the migrations, starts the idle colour, waits until its
# /health answers 200, points nginx at it with a graceful reload, smoke-checks through nginx and
# only then drains and stops the old colour. Any failure before that last step leaves (or puts)
# nginx on the old colour and stops the new one, so the old release keeps serving.
#
# The container runtime is pluggable (DEPLOY_RUNTIME=docker on the EC2 host, =process in the
# tests): scripts/deploy/runtime-<name>.sh defines runtime_migrate, runtime_start, runtime_stop,
# runtime_alive and runtime_logs.
#
# Exit codes: 0 deployed; 1 bad configuration; 2 migrations failed (nothing switched);
# 3 new colour never became healthy (rolled back); 4 smoke check failed after the switch
# (rolled back); 5 nginx rejected the new upstream (rolled back); 6 another deploy holds the lock.
set -Eeuo pipefail

DEPLOY_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly DEPLOY_DIR

: "${DEPLOY_RUNTIME:=docker}"
: "${DEPLOY_STATE_DIR:=/var/lib/task-manager}"
: "${DEPLOY_UPSTREAM_FILE:=/etc/nginx/task-manager/upstream.conf}"
: "${DEPLOY_NGINX_CMD:=nginx}"
: "${DEPLOY_PUBLIC_URL:=http://127.0.0.1}"
: "${DEPLOY_BLUE_PORT:=8001}"
: "${DEPLOY_GREEN_PORT:=8002}"
: "${DEPLOY_HEALTH_ATTEMPTS:=30}"
: "${DEPLOY_HEALTH_INTERVAL:=2}"
: "${DEPLOY_SMOKE_ATTEMPTS:=5}"
: "${DEPLOY_SMOKE_INTERVAL:=1}"
: "${DEPLOY_DRAIN_SECONDS:=5}"
: "${DEPLOY_STOP_TIMEOUT:=15}"

log() { printf '%s blue-green: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $2"; exit "$1"; }

port_of() {
  case "$1" in
    blue) printf '%s' "$DEPLOY_BLUE_PORT" ;;
    green) printf '%s' "$DEPLOY_GREEN_PORT" ;;
    *) die 1 "unknown colour '$1'" ;;
  esac
}

other_colour() { if [[ "$1" == blue ]]; then printf green; else printf blue; fi; }

live_colour() {
  local state="$DEPLOY_STATE_DIR/live_colour"
  if [[ -s "$state" ]]; then cat "$state"; fi
}

nginx_cmd() {
  local -a cmd
  read -r -a cmd <<<"$DEPLOY_NGINX_CMD"
  "${cmd[@]}" "$@"
}

# Rewrites the upstream include atomically, so nginx never reads a half-written file.
write_upstream() {
  local colour="$1" port tmp
  port="$(port_of "$colour")"
  tmp="$(mktemp "${DEPLOY_UPSTREAM_FILE}.XXXXXX")"
  cat >"$tmp" <<CONF
# Managed by scripts/deploy/blue_green.sh: live colour is $colour.
upstream task_manager_live {
    server 127.0.0.1:$port max_fails=0;
    keepalive 16;
}
CONF
  chmod 0644 "$tmp"
  mv -f "$tmp" "$DEPLOY_UPSTREAM_FILE"
}

# Points nginx at a colour. A reload is graceful: old workers finish their requests first.
switch_to() {
  local colour="$1"
  write_upstream "$colour"
  if ! nginx_cmd -t -q; then
    log "nginx rejected the upstream for $colour"
    return 1
  fi
  nginx_cmd -s reload
  log "nginx now routes to $colour (port $(port_of "$colour"))"
}

http_status() {
  curl -s -o /dev/null -w '%{http_code}' --max-time 3 "$1" || true
}

wait_healthy() {
  local colour="$1" url attempt
  url="http://127.0.0.1:$(port_of "$colour")/health"
  for ((attempt = 1; attempt <= DEPLOY_HEALTH_ATTEMPTS; attempt++)); do
    if [[ "$(http_status "$url")" == 200 ]]; then
      log "$colour healthy after $attempt attempt(s)"
      return 0
    fi
    if ! runtime_alive "$colour"; then
      log "$colour exited before becoming healthy"
      return 1
    fi
    sleep "$DEPLOY_HEALTH_INTERVAL"
  done
  log "$colour not healthy after $DEPLOY_HEALTH_ATTEMPTS attempts"
  return 1
}

reported_version() {
  curl -fsS --max-time 3 "$DEPLOY_PUBLIC_URL/version" 2>/dev/null |
    sed -n 's/.*"version"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p' || true
}

# Through nginx: the new release must answer /health and report the version we deployed. Retried
# because `nginx -s reload` returns before the new workers have taken over the listening socket.
smoke_check() {
  local attempt version
  for ((attempt = 1; attempt <= DEPLOY_SMOKE_ATTEMPTS; attempt++)); do
    version="$(reported_version)"
    if [[ "$version" == "$DEPLOY_VERSION" && "$(http_status "$DEPLOY_PUBLIC_URL/health")" == 200 ]]; then
      log "smoke check passed: $DEPLOY_PUBLIC_URL reports $version"
      return 0
    fi
    sleep "$DEPLOY_SMOKE_INTERVAL"
  done
  log "smoke check failed: expected version '$DEPLOY_VERSION', last saw '${version:-none}'"
  return 1
}

abandon() {
  local new="$1" code="$2" reason="$3"
  runtime_logs "$new" >&2 || true
  runtime_stop "$new" || true
  die "$code" "$reason; $new stopped, ${LIVE:-nothing} keeps serving"
}

rollback() {
  local new="$1" code="$2" reason="$3"
  if [[ -n "$LIVE" ]]; then
    switch_to "$LIVE" || log "could not switch back to $LIVE"
    # Same drain as a forward switch: old nginx workers may still hold requests to the new colour.
    sleep "$DEPLOY_DRAIN_SECONDS"
  elif [[ -f "$UPSTREAM_BACKUP" ]]; then
    cp -f "$UPSTREAM_BACKUP" "$DEPLOY_UPSTREAM_FILE"
    nginx_cmd -s reload || log "could not reload nginx with the previous upstream"
  fi
  abandon "$new" "$code" "$reason (rolled back)"
}

load_runtime() {
  local runtime_file="$DEPLOY_DIR/runtime-$DEPLOY_RUNTIME.sh"
  [[ -f "$runtime_file" ]] || die 1 "no runtime '$DEPLOY_RUNTIME' ($runtime_file)"
  # shellcheck source=/dev/null
  source "$runtime_file"
}

acquire_lock() {
  mkdir -p "$DEPLOY_STATE_DIR"
  exec 9>"$DEPLOY_STATE_DIR/deploy.lock"
  flock -n 9 || die 6 "another deploy is running"
}

main() {
  [[ -n "${DEPLOY_VERSION:-}" ]] || die 1 "DEPLOY_VERSION is required"
  load_runtime
  acquire_lock
  LIVE="$(live_colour)"
  local new
  new="$(other_colour "${LIVE:-green}")"
  UPSTREAM_BACKUP="$DEPLOY_STATE_DIR/upstream.conf.previous"
  if [[ -f "$DEPLOY_UPSTREAM_FILE" ]]; then cp -f "$DEPLOY_UPSTREAM_FILE" "$UPSTREAM_BACKUP"; fi
  log "deploying $DEPLOY_VERSION: live=${LIVE:-none} new=$new"

  runtime_migrate || die 2 "migrations failed; nothing switched, ${LIVE:-nothing} keeps serving"
  runtime_stop "$new" || true
  # 9>&-: the lock must not be inherited by the long-lived app process.
  runtime_start "$new" "$(port_of "$new")" 9>&- || abandon "$new" 3 "$new did not start"
  wait_healthy "$new" || abandon "$new" 3 "$new never became healthy"

  switch_to "$new" || rollback "$new" 5 "nginx rejected the switch to $new"
  smoke_check || rollback "$new" 4 "smoke check failed on $new"
  printf '%s\n' "$new" >"$DEPLOY_STATE_DIR/live_colour"
  printf '%s\n' "$DEPLOY_VERSION" >"$DEPLOY_STATE_DIR/live_version"

  if [[ -n "$LIVE" ]]; then
    # Old nginx workers finish their in-flight requests to the old colour during this pause;
    # the old colour then gets SIGTERM and finishes whatever it still holds before exiting.
    log "draining $LIVE for ${DEPLOY_DRAIN_SECONDS}s"
    sleep "$DEPLOY_DRAIN_SECONDS"
    runtime_stop "$LIVE"
  fi
  log "deployed $DEPLOY_VERSION on $new"
}

LIVE=""
UPSTREAM_BACKUP=""
main "$@"
