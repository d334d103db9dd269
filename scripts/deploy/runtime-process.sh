# shellcheck shell=bash
# Process runtime for scripts/deploy/blue_green.sh: each colour is a plain uvicorn process started
# from a release directory. The tests drive the real deploy logic with it, without a Docker engine.
#
# DEPLOY_RELEASE_DIR   release to deploy (working directory of the app and of the migrations)
# DEPLOY_ENV_FILE      optional KEY=value file exported to the app and the migrations
# DEPLOY_APP_CMD       server command, run in the release dir; --host/--port are appended
# DEPLOY_MIGRATE_CMD   migration command, run in the release dir

: "${DEPLOY_APP_CMD:=.venv/bin/uvicorn main:app --no-proxy-headers --http server_protocol:SlowClientProtocol --timeout-graceful-shutdown 8}"
: "${DEPLOY_MIGRATE_CMD:=.venv/bin/alembic upgrade head}"

_pid_file() { printf '%s/%s.pid' "$DEPLOY_STATE_DIR" "$1"; }

# Enters the release: its directory and its environment. Called inside a subshell only, so the
# release's variables never leak into the deploy script.
_enter_release() {
  [[ -d "${DEPLOY_RELEASE_DIR:-}" ]] || die 1 "DEPLOY_RELEASE_DIR is not a directory"
  cd "$DEPLOY_RELEASE_DIR" || return 1
  if [[ -n "${DEPLOY_ENV_FILE:-}" ]]; then
    set -a
    # shellcheck source=/dev/null
    source "$DEPLOY_ENV_FILE"
    set +a
  fi
}

runtime_migrate() {
  log "migrating with $DEPLOY_RELEASE_DIR"
  local -a cmd
  read -r -a cmd <<<"$DEPLOY_MIGRATE_CMD"
  (_enter_release && exec "${cmd[@]}") </dev/null
}

runtime_start() {
  local colour="$1" port="$2" log_file="$DEPLOY_STATE_DIR/$1.log"
  local -a cmd
  read -r -a cmd <<<"$DEPLOY_APP_CMD"
  # setsid makes the app a process-group leader (same pid, since a background subshell is not
  # one already), so runtime_stop reaches any worker it forks.
  (_enter_release && exec setsid "${cmd[@]}" --host 127.0.0.1 --port "$port") \
    </dev/null >"$log_file" 2>&1 &
  printf '%s\n' "$!" >"$(_pid_file "$colour")"
  log "started $colour (pid $!) on port $port"
}

runtime_alive() {
  local pid_file
  pid_file="$(_pid_file "$1")"
  [[ -s "$pid_file" ]] && kill -0 "$(cat "$pid_file")" 2>/dev/null
}

runtime_stop() {
  local colour="$1" pid_file pid waited
  pid_file="$(_pid_file "$colour")"
  [[ -s "$pid_file" ]] || return 0
  pid="$(cat "$pid_file")"
  # SIGTERM lets uvicorn finish in-flight requests (--timeout-graceful-shutdown) before exiting.
  kill -TERM -- "-$pid" 2>/dev/null || true
  for ((waited = 0; waited < DEPLOY_STOP_TIMEOUT * 10; waited++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$pid_file"
  log "stopped $colour"
}

runtime_logs() {
  local log_file="$DEPLOY_STATE_DIR/$1.log"
  if [[ -f "$log_file" ]]; then tail -n 20 "$log_file"; fi
}
