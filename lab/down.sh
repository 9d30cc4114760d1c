#!/usr/bin/env bash
# Stop the underlay lab: only processes named in $LAB/*.pid (QEMU VMs, SSH masters), and
# only if their command line still mentions $LAB (guards against a reused pid).
# Overlays and sockets are removed; serial/qemu logs are kept for post-mortems.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
LAB=${UNDERLAY_LAB_DIR:-$(dirname "$here")/.lab}
t0=$SECONDS
for pf in "$LAB"/*.pid; do
  [[ -e $pf ]] || continue
  pid=$(cat "$pf")
  if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$LAB"; then
    kill "$pid"
    for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done   # max 10 s
    kill -0 "$pid" 2>/dev/null && { echo "[down] $pid ($pf) ignored SIGTERM: SIGKILL" >&2; kill -9 "$pid"; }
    echo "[down] stopped $(basename "$pf" .pid) (pid $pid)" >&2
  fi
  rm -f "$pf"
done
rm -f "$LAB"/*.qcow2
find "$LAB" -maxdepth 1 -type s -delete   # monitor and ssh control sockets
echo "[down] lab down in $((SECONDS - t0))s" >&2
