#!/usr/bin/env bash
# The end-to-end benchmark (docs/benchmark.md): builds the release binaries, starts a private
# PostgreSQL with durable commits (fsync on, synchronous_commit on, the server defaults) unless
# --postgres-url or BENCH_POSTGRES_URL names one, then runs pipeline-bench with the arguments
# given (pipeline-bench --help lists them; --quick is a smoke check, --sweep tries the knobs).
#
#   scripts/bench.sh                 # full run, N = 1,000,000
#   scripts/bench.sh --quick         # small run
#   scripts/bench.sh --sweep         # plus the knob sweep
#   BENCH_POSTGRES=testkit scripts/bench.sh   # bus-testkit's PostgreSQL (fsync off, faster, not durable)
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p ingest -p crawler -p bench

args=("$@")
want_private=1
for a in "$@"; do [[ "$a" == --postgres-url* ]] && want_private=0; done
[[ -n "${BENCH_POSTGRES_URL:-}" || "${BENCH_POSTGRES:-durable}" == testkit ]] && want_private=0

if [[ $want_private == 1 ]]; then
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [[ -x "$pg_bin/pg_ctl" ]] || { echo "bench: no PostgreSQL in /usr/lib/postgresql (Debian package postgresql)" >&2; exit 1; }
  dir=$(mktemp -d /tmp/pipeline-bench-pg.XXXXXX)
  chmod 700 "$dir"
  run_as=()
  if [[ $(id -u) == 0 ]]; then
    # initdb and postgres refuse to run as root.
    chown postgres: "$dir"
    run_as=(runuser -u postgres --)
  fi
  cleanup() {
    "${run_as[@]}" "$pg_bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$dir"
  }
  trap cleanup EXIT INT TERM
  "${run_as[@]}" "$pg_bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  # Durability stays at the server defaults (fsync, synchronous_commit, full_page_writes on).
  # Commit timestamps are the end of the latency measurement; the rest is ordinary sizing.
  "${run_as[@]}" "$pg_bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -s \
    -o "-p $port -h 127.0.0.1 -k $dir -c track_commit_timestamp=on -c max_connections=200 -c shared_buffers=256MB -c max_wal_size=4GB" \
    start
  args+=(--postgres-url "postgres://postgres@127.0.0.1:$port/postgres")
fi

target/release/pipeline-bench "${args[@]}"
