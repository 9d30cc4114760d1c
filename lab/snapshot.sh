#!/usr/bin/env bash
# VM snapshots of a running lab: QEMU's internal qcow2 snapshots (RAM, device state and disk in the VM's
# overlay) through its HMP monitor socket $LAB/<vm>.monitor. Seconds for a 256 MiB guest, where a fresh boot
# costs minutes and undoing a KVM install by purging packages ~4.5 min.
#   lab/snapshot.sh save <vm> <tag>       savevm (the VM pauses meanwhile; a tag that exists is replaced)
#   lab/snapshot.sh restore <vm> <tag>    loadvm, then wait for SSH and set the guest clock from the host
#   lab/snapshot.sh list <vm>             info snapshots
#   lab/snapshot.sh delete <vm> <tag>     delvm
#   lab/snapshot.sh export <vm> <tag> <file>   pause, savevm, copy the overlay (with the snapshot), resume (exit 3: not resumed)
# What loadvm breaks and restore repairs: the guest's TCP state goes back in time, so open SSH sessions die
# (this lab's shared connection for the VM is closed first); the guest clock goes back to the save time
# (set from the host over SSH, bounded); LACP re-converges with the switch on its own (fast rate: seconds).
# A server managed over its data NIC is waited for on either path (eth1's old address or VLAN 100).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
LAB=${UNDERLAY_LAB_DIR:-$(dirname "$here")/.lab}
SSH_WAIT=${UNDERLAY_LAB_RESTORE_TIMEOUT:-120}   # seconds for the VM to answer SSH after loadvm
log() { printf '[snapshot %4ss] %s\n' "$SECONDS" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
usage() { sed -n '5,9s/^# \{0,1\}//p' "$0" >&2; exit 2; }

op=${1:-}; vm=${2:-}; tag=${3:-}
file=${4:-}
case $op in save | restore | delete) [[ -n $tag ]] || usage ;; export) [[ -n $tag && -n $file ]] || usage ;; list) ;; *) usage ;; esac
[[ $vm =~ ^(switch|server[0-9]+)$ ]] || die "'$vm' is not a lab VM (switch, serverK)"
[[ -z $tag || $tag =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$ ]] || die "bad snapshot tag '$tag' (letters, digits, . _ -)"
env=$LAB/lab.env
[[ -s $env ]] || die "no lab in $LAB (lab/lab up)"
read -r _ _ port _ _ newport < <(awk -v n="$vm" '$1 == n' "$env") || die "no VM $vm in $env"
newport=${newport:--}
pf=$LAB/$vm.pid
[[ -s $pf ]] && kill -0 "$(<"$pf")" 2>/dev/null || die "$vm is not running"

# hmp SECONDS COMMAND: one HMP command over the monitor socket; prints its output, fails on an error line.
hmp() {
  python3 - "$LAB/$vm.monitor" "$1" "$2" <<'PY'
import re, socket, sys, time
path, limit, cmd = sys.argv[1], float(sys.argv[2]), sys.argv[3]
deadline = time.monotonic() + limit
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(path)
def until_prompt():
    buf = b''
    while not buf.endswith(b'(qemu) '):
        left = deadline - time.monotonic()
        if left <= 0:
            sys.exit(f'monitor: no answer to {cmd!r} within {limit:.0f} s')
        s.settimeout(left)
        try:
            d = s.recv(65536)
        except socket.timeout:
            continue
        if not d:
            sys.exit('monitor: connection closed')
        buf += d
    return buf.decode(errors='replace')
until_prompt()                                   # greeting
s.sendall(cmd.encode() + b'\n')
out = re.sub(r'\x1b\[[0-9;]*[A-Za-z]', '', until_prompt()).replace('\r', '')
lines = out.split('\n')[1:-1]                    # drop the echoed command line and the prompt
text = '\n'.join(l for l in lines if l.strip())
if text:
    print(text)
if re.search(r'^(Error|Could not|Snapshot .* does not exist)', text, re.M | re.I):
    sys.exit(1)
PY
}

banner() { timeout 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1 && head -c 4 <&3" 2>/dev/null || true; }
close_ssh() { # the lab's shared SSH connection(s) to the VM: dead after loadvm, so close them now
  local n p
  for n in "$vm" "$vm-vlan100"; do
    ssh -F "$LAB/ssh_config" -S "$LAB/cm-$n" -O exit "$n" >/dev/null 2>&1 || true
    p=$LAB/ssh-master-$n.pid
    if [[ -s $p ]] && kill -0 "$(<"$p")" 2>/dev/null && tr '\0' ' ' <"/proc/$(<"$p")/cmdline" | grep -qF "$LAB"; then kill "$(<"$p")"; fi
    rm -f "$p" "$LAB/cm-$n"
  done
}

case $op in
  save)
    t=$SECONDS; ms0=$(date +%s%3N)
    hmp 600 "savevm $tag" >&2 || die "savevm $tag on $vm failed"
    log "$vm: saved '$tag' in $(( $(date +%s%3N) - ms0 )) ms"
    ;;
  export)
    # Paused around the copy: a running guest writes on (and with cache=unsafe QEMU's qcow2 metadata is only
    # written back to the file by a flush, which savevm does), so the copy is of a still overlay. Resumed always.
    ms0=$(date +%s%3N)
    hmp 30 stop >&2 || die "$vm: stop failed"
    rc=0
    { hmp 600 "savevm $tag" >&2 && cp --sparse=always "$LAB/$vm.qcow2" "$file"; } || rc=1
    hmp 30 cont >&2 || { log "ERROR: $vm: could not resume it after savevm"; exit 3; }
    ((rc == 0)) || die "$vm: savevm $tag or the copy to $file failed"
    # exit 3 = leaked clusters only (harmless); anything else is a damaged copy
    qemu-img check -q "$file" >/dev/null 2>&1 || (($? == 3)) || die "$vm: the copy $file does not check"
    log "$vm: exported '$tag' to $file in $(( $(date +%s%3N) - ms0 )) ms (paused meanwhile)"
    ;;
  list) hmp 30 "info snapshots" ;;
  delete) hmp 120 "delvm $tag" >&2 || die "delvm $tag on $vm failed"; log "$vm: deleted '$tag'" ;;
  restore)
    close_ssh
    ms0=$(date +%s%3N)
    hmp 600 "loadvm $tag" >&2 || die "loadvm $tag on $vm failed"
    ms1=$(date +%s%3N)
    # Wait (bounded) for the VM to answer SSH on the path that works: the VM's own port, or for a server
    # managed over its data NIC, the VLAN 100 path if the snapshot was taken after onboarding. A banner alone
    # is not enough: for a few seconds the switch may still forward over the LACP state from before loadvm.
    alias= deadline=$((SECONDS + SSH_WAIT))
    while ((SECONDS < deadline)); do
      for a in "$vm:$port" "$vm-vlan100:$newport"; do
        [[ ${a#*:} != - && $(banner "${a#*:}") == SSH- ]] || continue
        if timeout 30 "$here/ssh.sh" "${a%:*}" true 2>/dev/null; then alias=${a%:*}; break 2; fi
        close_ssh
      done
      sleep 2
    done
    [[ -n $alias ]] || die "$vm does not answer SSH ${SSH_WAIT}s after loadvm $tag"
    ms2=$(date +%s%3N)
    # The guest clock resumes at the save time. Set it from the host over the (then open) shared connection,
    # so the command runs ~0.3 s after the host's time is read.
    skew=$(timeout 30 "$here/ssh.sh" "$alias" "g=\$(date +%s); date -u -s @$(date +%s.%N) >/dev/null && echo \$((\$(date +%s) - g))") \
      || die "$vm: setting the guest clock failed"
    log "$vm: restored '$tag': loadvm $((ms1 - ms0)) ms, SSH ($alias) after $((ms2 - ms1)) ms, clock moved forward ${skew} s"
    ;;
esac
