#!/usr/bin/env bash
# Local Temporal dev server for underlay: 127.0.0.1:7233, Web UI on 127.0.0.1:8233, SQLite state in .data/,
# and underlay's custom search attributes registered.
#   scripts/dev-server.sh start | stop | status
# With payload encryption, UNDERLAY_CODEC_ENDPOINT=http://127.0.0.1:8888 (an `underlay codec-server`) makes the
# Web UI decode payloads there (--ui-codec-endpoint).
set -euo pipefail
cd "$(dirname "$0")/.."
data=.data
pidfile=$data/temporal.pid
port=${TEMPORAL_DEV_PORT:-7233}
ui_port=${TEMPORAL_DEV_UI_PORT:-8233}
mkdir -p "$data"

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

case "${1:-start}" in
start)
  if running; then echo "dev-server: already running (pid $(cat "$pidfile"))"; exit 0; fi
  bash scripts/install-temporal.sh
  # shellcheck disable=SC2046 # one flag pair per search attribute, from the project's single definition
  flags=$(node_modules/.bin/tsx src/cli/main.ts dev-server-flags)
  codec=()
  if [ -n "${UNDERLAY_CODEC_ENDPOINT:-}" ]; then codec=(--ui-codec-endpoint "$UNDERLAY_CODEC_ENDPOINT"); fi
  # setsid: the server outlives this script and is not killed by the caller's Ctrl-C.
  setsid .tools/bin/temporal server start-dev --ip 127.0.0.1 --port "$port" --ui-port "$ui_port" \
    --db-filename "$data/temporal.db" --log-level warn $flags "${codec[@]}" >"$data/temporal.log" 2>&1 < /dev/null &
  echo $! >"$pidfile"
  for _ in $(seq 1 60); do
    if .tools/bin/temporal operator cluster health --address "127.0.0.1:$port" >/dev/null 2>&1; then
      echo "dev-server: up on 127.0.0.1:$port — Web UI http://127.0.0.1:$ui_port (pid $(cat "$pidfile"), log $data/temporal.log)"
      exit 0
    fi
    running || { echo "dev-server: exited; see $data/temporal.log" >&2; tail -20 "$data/temporal.log" >&2; exit 1; }
    sleep 0.5
  done
  echo "dev-server: not healthy after 30 s; see $data/temporal.log" >&2; exit 1 ;;
stop)
  if running; then kill "$(cat "$pidfile")"; for _ in $(seq 1 20); do running || break; sleep 0.25; done; fi
  rm -f "$pidfile"; echo "dev-server: stopped" ;;
status)
  if running; then echo "dev-server: running (pid $(cat "$pidfile"))"; else echo "dev-server: not running"; exit 1; fi ;;
*) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
