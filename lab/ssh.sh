#!/usr/bin/env bash
# Run a command on a lab VM: lab/ssh.sh NAME [COMMAND...]  (stdin/stdout/stderr/exit code pass through)
# Each new SSH handshake into a TCG guest costs ~3 s, so the first call starts one
# master connection per VM (pid file in $LAB, stopped by lab/down.sh) and later calls reuse it.
# Plain ssh with the lab key and pinned host key; see $LAB/ssh_config written by lab/up.sh.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
LAB=${UNDERLAY_LAB_DIR:-$(dirname "$here")/.lab}
name=${1:?usage: lab/ssh.sh NAME [COMMAND...]}; shift
cfg=$LAB/ssh_config; sock=$LAB/cm-$name
[[ -f $cfg ]] || { echo "no $cfg: is the lab up (lab/up.sh)?" >&2; exit 255; }
if ! ssh -F "$cfg" -S "$sock" -O check "$name" 2>/dev/null; then
  rm -f "$sock"
  nohup ssh -F "$cfg" -n -N -M -S "$sock" -o ControlPersist=no -o ServerAliveInterval=15 "$name" \
    >>"$LAB/cm-$name.log" 2>&1 &
  echo $! >"$LAB/ssh-master-$name.pid"
  for ((i = 0; i < 60; i++)); do   # bounded: 60 x 0.5 s
    ssh -F "$cfg" -S "$sock" -O check "$name" 2>/dev/null && break
    kill -0 "$(cat "$LAB/ssh-master-$name.pid")" 2>/dev/null || { cat "$LAB/cm-$name.log" >&2; exit 255; }
    sleep 0.5
  done
fi
exec ssh -F "$cfg" -S "$sock" "$name" "$@"
