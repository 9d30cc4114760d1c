#!/usr/bin/env bash
# The whole thing on one machine: Temporal dev server + worker, the QEMU lab (a switch VM and a server VM),
# then a real onboarding of the lab server with live progress. Re-running is safe: an onboarded host shows
# every step "unchanged".   Stop everything: scripts/demo.sh stop
set -euo pipefail
cd "$(dirname "$0")/.."
data=.data
mkdir -p "$data"

if [ "${1:-}" = stop ]; then
  [ -f "$data/worker.pid" ] && kill "$(cat "$data/worker.pid")" 2>/dev/null || true
  rm -f "$data/worker.pid"
  bash lab/down.sh
  bash scripts/dev-server.sh stop
  exit 0
fi

t0=$SECONDS
bash scripts/setup.sh
bash scripts/dev-server.sh start
if ! bash lab/lab status >/dev/null 2>&1; then bash lab/up.sh; fi
if ! { [ -f "$data/worker.pid" ] && kill -0 "$(cat "$data/worker.pid")" 2>/dev/null; }; then
  # The lab spec references the lab key (.lab/id_ed25519): the worker's credentials directory is the lab's.
  UNDERLAY_CREDENTIALS_DIR="${UNDERLAY_LAB_DIR:-$PWD/.lab}" setsid bin/underlay worker >"$data/worker.log" 2>&1 </dev/null &
  echo $! >"$data/worker.pid"
  echo "demo: worker started (pid $(cat "$data/worker.pid"), log $data/worker.log)"
fi
node_modules/.bin/tsx lab/spec.ts server1 >"$data/lab-server1.yaml"
echo "demo: spec of the lab server: $data/lab-server1.yaml   (ready after $((SECONDS - t0))s)"
echo "demo: Web UI: http://127.0.0.1:8233/namespaces/default/workflows?query=UnderlayServerId%3D%22lab-server1%22"
bin/underlay onboard "$data/lab-server1.yaml" --watch
echo "demo: done in $((SECONDS - t0))s. Stop with: scripts/demo.sh stop"
