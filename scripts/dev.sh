#!/usr/bin/env bash
# The pipeline on this machine, without Docker: a private redis-server (AOF on) and a private
# PostgreSQL with their data under .dev/ (git-ignored; a second run reuses it), the workspace
# binaries built, migrations applied, then every service as a local process with its log
# lines prefixed and coloured. Ctrl-C stops the services (SIGTERM, they drain and ack), then
# Redis and PostgreSQL.
#
#   scripts/dev.sh            build (release), start everything, wait for Ctrl-C
#   scripts/dev.sh reset      delete .dev/ (all local data) and exit
#
# Settings (environment):
#   PROFILE=release|debug     cargo profile (default release)
#   DEV_DIR=.dev              where data, logs and pid files live
#   DEV_REDIS_PORT=6390       DEV_PG_PORT=5440
#   DEV_OPS_PORT=9101         first /metrics port (one per service, in name order)
#   DEV_HTTP_PORT=8080        first HTTP port (services that have HTTP_ADDR)
#   DEV_CRAWLER_RATE=5        crawler entries per second
#   DEV_SERVICES="a b"        only these services (default: every services/* binary)
#   DEV_SKIP_BUILD=1          use the binaries already in target/
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PROFILE=${PROFILE:-release}
DEV_DIR=${DEV_DIR:-$ROOT/.dev}
REDIS_PORT=${DEV_REDIS_PORT:-6390}
PG_PORT=${DEV_PG_PORT:-5440}
OPS_PORT=${DEV_OPS_PORT:-9101}
HTTP_PORT=${DEV_HTTP_PORT:-8080}
CRAWLER_RATE=${DEV_CRAWLER_RATE:-5}
DB_NAME=pipeline
BIN=$ROOT/target/$PROFILE
REDIS_URL="redis://127.0.0.1:$REDIS_PORT/"
DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/$DB_NAME"

if [ -t 1 ] || [ -n "${FORCE_COLOR:-}" ]; then
  BOLD=$'\033[1m'; RESET=$'\033[0m'
  COLORS=($'\033[32m' $'\033[34m' $'\033[35m' $'\033[36m' $'\033[33m' $'\033[92m' $'\033[94m' $'\033[95m')
else
  BOLD=''; RESET=''; COLORS=('')
fi
say() { printf '%s[dev]%s %s\n' "$BOLD" "$RESET" "$*"; }
die() { say "error: $*" >&2; exit 1; }

if [ "${1:-run}" = reset ]; then
  for pidfile in "$DEV_DIR"/run/*.pid; do
    [ -e "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null && die "stop the running dev.sh first"
  done
  rm -rf "$DEV_DIR"; say "removed $DEV_DIR"; exit 0
fi
[ "${1:-run}" = run ] || die "usage: scripts/dev.sh [run|reset]"

# ---------------------------------------------------------------- tools

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }
pg_bin_dir() {
  local d; d=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -1)
  if [ -n "$d" ] && [ -x "$d/initdb" ]; then echo "$d"; elif command -v initdb >/dev/null; then dirname "$(command -v initdb)"; fi
}
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
[ -n "$(pg_bin_dir)" ] || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]} with apt-get"
  if ! { as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"; }; then
    die "could not install ${missing[*]}; install them and run again"
  fi
fi
PG_BIN=$(pg_bin_dir)
[ -n "$PG_BIN" ] || die "no PostgreSQL binaries found"

# initdb and postgres refuse to run as root: use the `postgres` user (or nobody) then.
RUN_AS=()
if [ "$(id -u)" = 0 ]; then
  PG_USER=postgres; id -u "$PG_USER" >/dev/null 2>&1 || PG_USER=nobody
  RUN_AS=(runuser -u "$PG_USER" --)
fi
pg() { "${RUN_AS[@]}" "$PG_BIN/$1" "${@:2}"; }

mkdir -p "$DEV_DIR"/{redis,postgres,logs,run}
PG_DATA=$DEV_DIR/postgres/data
PG_SOCK=$DEV_DIR/postgres/run
mkdir -p "$PG_SOCK"
if [ ${#RUN_AS[@]} -gt 0 ]; then
  chown -R "$PG_USER" "$DEV_DIR/postgres"
  "${RUN_AS[@]}" test -w "$DEV_DIR/postgres" \
    || die "$PG_USER cannot write $DEV_DIR/postgres (a parent directory is private); set DEV_DIR elsewhere, e.g. DEV_DIR=/var/tmp/pipeline-dev"
fi

# ---------------------------------------------------------------- stop (trap)

SERVICE_PIDS=(); SERVICE_NAMES=(); REDIS_PID=''; STOPPING=''
# shellcheck disable=SC2317 # called from the traps
stop_all() {
  [ -n "$STOPPING" ] && return; STOPPING=1
  trap '' INT TERM
  local i pid deadline=$((SECONDS + 20))
  if [ ${#SERVICE_PIDS[@]} -gt 0 ]; then
    say "stopping services (SIGTERM; they finish and ack in-flight batches)"
    for pid in "${SERVICE_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for i in "${!SERVICE_PIDS[@]}"; do
      pid=${SERVICE_PIDS[$i]}
      while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
      if kill -0 "$pid" 2>/dev/null; then
        say "${SERVICE_NAMES[$i]} did not stop in time: SIGKILL"; kill -KILL "$pid" 2>/dev/null || true
      fi
      wait "$pid" 2>/dev/null || true
      rm -f "$DEV_DIR/run/${SERVICE_NAMES[$i]}.pid"
    done
  fi
  if [ -n "$REDIS_PID" ]; then
    say "stopping redis (AOF is fsynced)"
    redis-cli -p "$REDIS_PORT" shutdown >/dev/null 2>&1 || kill -TERM "$REDIS_PID" 2>/dev/null || true
    wait "$REDIS_PID" 2>/dev/null || true
    rm -f "$DEV_DIR/run/redis.pid"
  fi
  if pg pg_ctl status -D "$PG_DATA" >/dev/null 2>&1; then
    say "stopping postgres"
    pg pg_ctl stop -D "$PG_DATA" -m fast -w >/dev/null || true
  fi
  say "stopped; data kept in $DEV_DIR (scripts/dev.sh reset deletes it)"
}
trap 'stop_all; exit 130' INT
trap 'stop_all; exit 143' TERM
trap 'stop_all' EXIT

# Processes of an earlier run that was killed hard, found by their pid files (and checked to
# still be that program): the services first, Redis after them, as on a normal stop.
stop_leftover() {
  local pidfile=$1 program=$2 pid
  [ -e "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$program"; then
    say "stopping $(basename "$pidfile" .pid) left over from an earlier run (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  fi
  rm -f "$pidfile"
}
for pidfile in "$DEV_DIR"/run/*.pid; do
  name=$(basename "$pidfile" .pid)
  [ "$name" = redis ] || stop_leftover "$pidfile" "/$name"
done
stop_leftover "$DEV_DIR/run/redis.pid" redis-server
pg pg_ctl status -D "$PG_DATA" >/dev/null 2>&1 && pg pg_ctl stop -D "$PG_DATA" -m fast -w >/dev/null

# ---------------------------------------------------------------- infrastructure

# Started in their own session (setsid) so the terminal's Ctrl-C reaches only this script,
# which stops them after the services have drained.
say "redis on 127.0.0.1:$REDIS_PORT (data $DEV_DIR/redis)"
setsid redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$DEV_DIR/redis" \
  --appendonly yes --appendfsync everysec --maxmemory-policy noeviction --save '' \
  --logfile "$DEV_DIR/logs/redis.log" </dev/null &
REDIS_PID=$!
echo "$REDIS_PID" >"$DEV_DIR/run/redis.pid"
for _ in $(seq 100); do
  redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
  kill -0 "$REDIS_PID" 2>/dev/null || { REDIS_PID=''; tail -5 "$DEV_DIR/logs/redis.log" >&2; die "redis-server exited (port $REDIS_PORT in use?)"; }
  sleep 0.1
done
redis-cli -p "$REDIS_PORT" ping >/dev/null || die "redis does not answer on $REDIS_PORT"

if [ ! -s "$PG_DATA/PG_VERSION" ]; then
  say "initdb $PG_DATA"
  pg initdb -D "$PG_DATA" -U postgres --auth=trust -E UTF8 --locale=C >"$DEV_DIR/logs/initdb.log" 2>&1 \
    || { cat "$DEV_DIR/logs/initdb.log" >&2; die "initdb failed"; }
fi
say "postgres on 127.0.0.1:$PG_PORT (data $PG_DATA)"
pg pg_ctl start -D "$PG_DATA" -w -t 60 -l "$DEV_DIR/postgres/postgres.log" \
  -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -k $PG_SOCK" >/dev/null \
  || { tail -20 "$DEV_DIR/postgres/postgres.log" >&2; die "postgres did not start (port $PG_PORT in use?)"; }
psql_q() { psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -tAq "$@"; }
if [ "$(psql_q -c "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'")" != 1 ]; then
  psql_q -c "CREATE DATABASE $DB_NAME"
  say "created database $DB_NAME"
fi

# ---------------------------------------------------------------- build and migrate

if [ -z "${DEV_SKIP_BUILD:-}" ]; then
  say "cargo build ($PROFILE)"
  flags=(--workspace --bins); [ "$PROFILE" = release ] && flags+=(--release)
  [ "$PROFILE" = release ] || [ "$PROFILE" = debug ] || die "PROFILE must be release or debug"
  cargo build "${flags[@]}"
fi
[ -x "$BIN/busctl" ] || die "$BIN/busctl is missing (build failed?)"
say "migrations (busctl migrate):"
"$BIN/busctl" migrate --database-url "$DATABASE_URL" | sed 's/^/      /'

# ---------------------------------------------------------------- services

if [ -n "${DEV_SERVICES:-}" ]; then
  read -r -a services <<<"$DEV_SERVICES"
else
  services=(); for d in services/*/; do services+=("$(basename "$d")"); done
fi

# Prefixes each line with the service's name in its colour and keeps a copy in logs/.
# It ignores Ctrl-C so the service's last lines (its shutdown) still get through.
prefix() {
  local label=$1 color=$2 log=$3
  trap '' INT TERM
  tee -a "$log" | sed -u "s/^/${color}${label}${RESET} /"
}

printf -v sep '%*s' 72 ''; sep=${sep// /-}
summary=()
ops=$OPS_PORT; http=$HTTP_PORT; n=0
for name in "${services[@]}"; do
  bin=$BIN/$name
  if [ ! -x "$bin" ]; then say "skipping $name: no binary $bin"; continue; fi
  vars=$("$bin" --help | sed -nE 's/^ +([A-Z][A-Z0-9_]*) +\(default:.*/\1/p')
  env=(REDIS_URL="$REDIS_URL" OPS_ADDR="127.0.0.1:$ops")
  grep -qx DATABASE_URL <<<"$vars" && env+=(DATABASE_URL="$DATABASE_URL")
  line="$name: metrics http://127.0.0.1:$ops/metrics"
  if grep -qx HTTP_ADDR <<<"$vars"; then
    env+=(HTTP_ADDR="127.0.0.1:$http"); line+="  http http://127.0.0.1:$http"; http=$((http + 1))
  fi
  grep -qx RATE <<<"$vars" && env+=(RATE="$CRAWLER_RATE")
  color=${COLORS[$((n % ${#COLORS[@]}))]}
  printf -v label '%-22s' "[$name]"
  setsid env "${env[@]}" "$bin" </dev/null > >(prefix "$label" "$color" "$DEV_DIR/logs/$name.log") 2>&1 &
  SERVICE_PIDS+=($!); SERVICE_NAMES+=("$name")
  echo "$!" >"$DEV_DIR/run/$name.pid"
  summary+=("$line")
  ops=$((ops + 1)); n=$((n + 1))
done
[ ${#SERVICE_PIDS[@]} -gt 0 ] || die "no service binary found in $BIN"

cat >"$DEV_DIR/env" <<EOF
export REDIS_URL=$REDIS_URL
export DATABASE_URL=$DATABASE_URL
export PATH=$BIN:\$PATH
EOF
say "$sep"
for line in "${summary[@]}"; do say "$line"; done
grep -qx command-broadcaster <<<"$(printf '%s\n' "${SERVICE_NAMES[@]}")" && {
  say "commands: curl -XPOST http://127.0.0.1:$HTTP_PORT/api/commands/crawler -H 'content-type: application/json' -d '{\"command\":\"PAUSE\"}'"
  say "notifications: ws://127.0.0.1:$HTTP_PORT/ws"
}
say "redis:    redis-cli -p $REDIS_PORT        postgres: psql $DATABASE_URL"
say "busctl:   source $DEV_DIR/env && busctl monitor     logs: $DEV_DIR/logs/"
say "Ctrl-C stops everything"
say "$sep"

# Wait for Ctrl-C; report services that exit on their own. `wait` returns at once on a
# trapped signal, unlike a foreground sleep.
alive=${#SERVICE_PIDS[@]}
declare -A reported=()
while [ "$alive" -gt 0 ]; do
  sleep 1 & wait $! || true
  alive=0
  for i in "${!SERVICE_PIDS[@]}"; do
    pid=${SERVICE_PIDS[$i]}
    if kill -0 "$pid" 2>/dev/null; then alive=$((alive + 1)); continue; fi
    [ -n "${reported[$pid]:-}" ] && continue
    code=0; wait "$pid" || code=$?
    reported[$pid]=1
    say "${SERVICE_NAMES[$i]} exited with code $code (log: $DEV_DIR/logs/${SERVICE_NAMES[$i]}.log)"
  done
done
say "every service has exited"
exit 1
