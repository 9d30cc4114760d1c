#!/usr/bin/env bash
# Boot the underlay lab under QEMU TCG: a `switch` VM (leaf-01) and N `serverK` VMs
# (UNDERLAY_LAB_SERVERS, default 1), all on overlays of the cached images (lab/image/build.sh).
#   serverK: eth0 mgmt (user-mode, restrict=on, SSH forwarded to 127.0.0.1 only),
#            eth1/eth2 cabled to switch swp(2K-1)/swp(2K) over loopback UDP sockets.
#   UNDERLAY_LAB_SERVER_IMAGES="fresh nm ...": one image variant per server (default fresh); switch: base.
#   UNDERLAY_LAB_DATA_MGMT="K ...": serverK is managed over its data NIC only: no SSH forward on its own
#     eth0; the switch forwards 127.0.0.1:BASE+20+K to eth1's 198.18.10.(20+K) (native VLAN, before onboarding)
#     and 127.0.0.1:BASE+40+K to 192.0.2.(20+K) (VLAN 100 on the bond, after onboarding).
#   UNDERLAY_LAB_DPDK="K ...": serverK is a DPDK host: a q35 machine with an emulated IOMMU (intel-iommu,
#     intremap=on: vfio's type-1 IOMMU refuses a platform without interrupt remapping), 2 vCPUs and UNDERLAY_LAB_DPDK_MEM MiB (default 1024), an e1000e NIC
#     eth4 that vfio-pci can take (own isolated user net), and the IOMMU and 2 MiB hugepages on its kernel command
#     line (UNDERLAY_LAB_DPDK_PAGES, default 128) — the lab boots kernels directly, as a PXE server passing the
#     parameters would: there is no GRUB in the image.
# State (pid files, overlays, lab key, known_hosts, serial logs, lab.env) lives in $LAB; lab/down.sh stops it.
# Boot cache (UNDERLAY_LAB_BOOT_CACHE=1, the default; 0 = always boot): the first boot of a lab configuration
# (images, servers, data-NIC management, memory, this script, QEMU) saves every VM once it has booted (savevm
# `booted`; overlays + lab key + host keys in ${UNDERLAY_CACHE}/lab-boots/<key>); later labs of the same
# configuration start from there (-loadvm: seconds instead of minutes of TCG boot), then set each guest clock from
# the host, make lldpd announce again and put the switch's ports in promiscuous mode (below). Ports are host-side
# only (hostfwd, UDP cables), so labs with other port bases share an entry. Entries of other images are pruned,
# and all but the 8 most recently used.
# lab.env, one line per VM: NAME ROLE SSH-PORT IMAGE VIA NEW-PORT
#   VIA = eth0 (SSH-PORT forwarded by QEMU to the VM's own management NIC) or eth1 (SSH-PORT = the switch's
#   forward to eth1's pre-onboarding address); NEW-PORT = the switch's forward to the VLAN 100 address, or -.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
LAB=${UNDERLAY_LAB_DIR:-$(dirname "$here")/.lab}
read -r -a IMAGES <<<"${UNDERLAY_LAB_SERVER_IMAGES:-}"
N=${UNDERLAY_LAB_SERVERS:-$((${#IMAGES[@]} ? ${#IMAGES[@]} : 1))}
BASE=${UNDERLAY_LAB_PORT_BASE:-22200}   # SSH: BASE+i (0 = switch); data-NIC mgmt: BASE+20+K, BASE+40+K; UDP cables: BASE+100+...
MEM=${UNDERLAY_LAB_MEM:-256}
NICE=${UNDERLAY_LAB_NICE:-0}   # CPU niceness of the VMs (0..19)
[[ $NICE =~ ^[0-9]+$ ]] && ((NICE <= 19)) || { echo "UNDERLAY_LAB_NICE must be 0..19" >&2; exit 2; }
TIMEOUT=${UNDERLAY_LAB_BOOT_TIMEOUT:-$((420 + 90 * N))}   # the VMs share the host's cores while they boot (and with another lab in the test suite)
log() { printf '[up %4ss] %s\n' "$SECONDS" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
[[ $N =~ ^[0-9]+$ ]] && ((N >= 1 && N <= 12)) || die "UNDERLAY_LAB_SERVERS must be 1..12 (switch PCI slots)"
((${#IMAGES[@]})) || for ((k = 0; k < N; k++)); do IMAGES[k]=fresh; done
((${#IMAGES[@]} == N)) || die "UNDERLAY_LAB_SERVER_IMAGES has ${#IMAGES[@]} words for $N servers"
for v in "${IMAGES[@]}"; do
  [[ $v =~ ^(base|fresh|ifupdown|networkd|nm)$ ]] || die "unknown server image '$v' (base, fresh, ifupdown, networkd, nm)"
done
declare -A DATA=()   # K -> 1: serverK managed over its data NIC
for k in ${UNDERLAY_LAB_DATA_MGMT:-}; do
  [[ $k =~ ^[0-9]+$ ]] && ((k >= 1 && k <= N)) || die "UNDERLAY_LAB_DATA_MGMT: '$k' is not a server 1..$N"
  DATA[$k]=1
done
declare -A DPDK=()   # K -> 1: serverK is a DPDK host
for k in ${UNDERLAY_LAB_DPDK:-}; do
  [[ $k =~ ^[0-9]+$ ]] && ((k >= 1 && k <= N)) || die "UNDERLAY_LAB_DPDK: '$k' is not a server 1..$N"
  DPDK[$k]=1
done
DPDK_MEM=${UNDERLAY_LAB_DPDK_MEM:-1024}
DPDK_PAGES=${UNDERLAY_LAB_DPDK_PAGES:-128}
[[ $DPDK_MEM =~ ^[0-9]+$ && $DPDK_PAGES =~ ^[0-9]+$ ]] && ((DPDK_PAGES * 2 + 384 <= DPDK_MEM)) \
  || die "UNDERLAY_LAB_DPDK_MEM ($DPDK_MEM MiB) must hold UNDERLAY_LAB_DPDK_PAGES ($DPDK_PAGES) × 2 MiB + 384 MiB for the OS"
declare -A DATA=()   # K -> 1: serverK managed over its data NIC
for k in ${UNDERLAY_LAB_DATA_MGMT:-}; do
  [[ $k =~ ^[0-9]+$ ]] && ((k >= 1 && k <= N)) || die "UNDERLAY_LAB_DATA_MGMT: '$k' is not a server 1..$N"
  DATA[$k]=1
done

img=$("$here/image/build.sh")
for v in base "${IMAGES[@]}"; do [[ -f $img/$v.qcow2 ]] || die "no $v.qcow2 in $img"; done
mkdir -p "$LAB"
for pf in "$LAB"/*.pid; do
  [[ -e $pf ]] && kill -0 "$(cat "$pf")" 2>/dev/null && die "lab already running ($pf): run lab/down.sh"
done
rm -f "$LAB"/*.pid "$LAB"/*.qcow2 "$LAB"/*.serial.log "$LAB"/*.qemu.log "$LAB"/known_hosts "$LAB"/id_ed25519* \
      "$LAB"/*.monitor "$LAB"/cm-* "$LAB"/lab.env "$LAB"/ssh_config "$LAB"/switch.dnat

# Ports must be free: SSH forwards (TCP) and the cable ends (UDP), all on 127.0.0.1.
# Listening TCP / bound UDP only: TIME_WAIT leftovers of a previous lab are harmless.
port_busy() { [[ -n $(ss -Hlntu "( sport = :$1 )" 2>/dev/null) ]]; }
for ((i = 0; i <= N; i++)); do port_busy $((BASE + i)) && die "port $((BASE + i)) in use (set UNDERLAY_LAB_PORT_BASE)"; done
for k in "${!DATA[@]}"; do
  for t in $((BASE + 20 + k)) $((BASE + 40 + k)); do port_busy "$t" && die "port $t in use (set UNDERLAY_LAB_PORT_BASE)"; done
done
for ((p = 1; p <= 2 * N; p++)); do
  for u in $((BASE + 100 + 2 * p)) $((BASE + 101 + 2 * p)); do port_busy "$u" && die "udp port $u in use"; done
done

# Boot cache entry of this configuration (see the header); a complete entry has the file `complete`.
BOOT_CACHE=${UNDERLAY_LAB_BOOT_CACHE:-1}
[[ $BOOT_CACHE =~ ^[01]$ ]] || die "UNDERLAY_LAB_BOOT_CACHE must be 0 or 1"
boots=${UNDERLAY_CACHE:-/var/cache/underlay}/lab-boots
ikey=$(basename "$img")
bkey=$ikey-$({
  echo "servers=$N images=${IMAGES[*]} data=$(printf '%s\n' "${!DATA[@]}" | sort -n | tr '\n' ' ') mem=$MEM"
  ((${#DPDK[@]})) && echo "dpdk=$(printf '%s\n' "${!DPDK[@]}" | sort -n | tr '\n' ' ') dpdk-mem=$DPDK_MEM dpdk-pages=$DPDK_PAGES"
  qemu-system-x86_64 --version | head -1
  cat "$here/up.sh"
} | sha256sum | cut -c1-16)
entry=$boots/$bkey
warm=0
if ((BOOT_CACHE)); then
  mkdir -p "$boots"
  for d in "$boots"/*; do   # other images' entries, and leftovers of interrupted saves (older than an hour)
    [[ -d $d ]] || continue
    case ${d##*/} in
      "$ikey"-*.tmp.*) [[ -n $(find "$d" -maxdepth 0 -mmin +60) ]] && rm -rf "$d" ;;
      "$ikey"-*) ;;
      *) log "pruning boot cache entry ${d##*/} (another image)"; rm -rf "$d" ;;
    esac
  done
  if [[ -f $entry/complete ]]; then
    warm=1
    touch "$entry/complete"   # last use: the 8 most recently used entries are kept
  fi
  mapfile -t stale < <(ls -1t "$boots"/*/complete 2>/dev/null | tail -n +9)
  for f in "${stale[@]}"; do log "pruning boot cache entry $(basename "$(dirname "$f")") (least recently used)"; rm -rf "$(dirname "$f")"; done
fi

# Per-lab-instance key: the public half reaches the guests over fw_cfg, never baked into the image (a warm start
# reuses the key of the boot it starts from: the guests already trust it).
if ((warm)); then
  install -m 600 "$entry/id_ed25519" "$LAB/id_ed25519"
  install -m 644 "$entry/id_ed25519.pub" "$LAB/id_ed25519.pub"
else
  ssh-keygen -q -t ed25519 -N '' -C "underlay-lab@$(hostname)" -f "$LAB/id_ed25519"
fi
: >"$LAB/known_hosts"

mac() { printf '52:54:00:00:%02x:%02x' "$1" "$2"; }   # 52:54:00:00:<vm>:<nic>, vm 0 = switch
boot() { # boot NAME ROLE VMINDEX IMAGE USERNET-OPTIONS EXTRA-QEMU-ARGS... (VM_MEM, VM_SMP, VM_MACHINE, VM_APPEND: per VM)
  local name=$1 role=$2 i=$3 image=$4 net=$5 from=(); shift 5
  local machine=()
  [[ -n ${VM_MACHINE:-} ]] && machine=(-machine "$VM_MACHINE")
  if ((warm)); then
    cp --sparse=always "$entry/$name.qcow2" "$LAB/$name.qcow2"
    from=(-loadvm booted)
  else
    qemu-img create -q -f qcow2 -b "$img/$image.qcow2" -F qcow2 "$LAB/$name.qcow2"
  fi
  nice -n "$NICE" qemu-system-x86_64 -name "underlay-$name" -nodefaults -display none -daemonize -pidfile "$LAB/$name.pid" \
    -accel tcg,tb-size=128 -cpu max -m "${VM_MEM:-$MEM}" -smp "${VM_SMP:-1}" "${machine[@]}" \
    -kernel "$img/vmlinuz" -initrd "$img/initrd.img" \
    -append "root=/dev/vda rw console=ttyS0 quiet mitigations=off net.ifnames=0 systemd.firstboot=off${VM_APPEND:+ $VM_APPEND}" \
    -drive "file=$LAB/$name.qcow2,if=virtio,format=qcow2,cache=unsafe" \
    -serial "file:$LAB/$name.serial.log" -monitor "unix:$LAB/$name.monitor,server=on,wait=off" \
    -netdev "user,id=mgmt,net=198.18.0.0/24,restrict=on$net" \
    -device "virtio-net-pci,netdev=mgmt,mac=$(mac "$i" 0),addr=0x3" \
    -fw_cfg "name=opt/underlay/authorized_keys,file=$LAB/id_ed25519.pub" \
    -fw_cfg "name=opt/underlay/hostname,string=$name" -fw_cfg "name=opt/underlay/role,string=$role" \
    "${from[@]}" "$@" 2>"$LAB/$name.qemu.log" || { cat "$LAB/$name.qemu.log" >&2; die "qemu for $name failed"; }
}
env_boot() { # env_boot [VAR=value ...] -- boot-args...: boot with per-VM settings (local to this call)
  local VM_MEM='' VM_SMP='' VM_MACHINE='' VM_APPEND=''
  while [[ $1 != -- ]]; do
    [[ ${1%%=*} =~ ^VM_(MEM|SMP|MACHINE|APPEND)$ ]] || die "env_boot: unknown setting ${1%%=*}"
    local "${1%%=*}=${1#*=}"; shift
  done
  shift
  boot "$@"
}
cable() { # cable VMINDEX NIC SLOT MYPORT PEERPORT -> qemu args for one data NIC
  printf '%s\n' -netdev "socket,id=d$2,udp=127.0.0.1:$5,localaddr=127.0.0.1:$4" \
    -device "virtio-net-pci,netdev=d$2,mac=$(mac "$1" "$2"),addr=$(printf '0x%x' "$3"),speed=10000,duplex=full"
}

# From here on a failure stops whatever this run started (logs stay for the post-mortem).
# A warm start that failed drops its cache entry, so that the next lab boots afresh (and saves anew).
trap 'rc=$?; ((rc == 0)) || { log "failed: stopping the lab (logs kept in $LAB)"; "$here/down.sh"
  ((warm)) && { log "dropping the boot cache entry $entry"; rm -rf "$entry"; }; }' EXIT
t0=$SECONDS
sw=()
for ((p = 1; p <= 2 * N; p++)); do mapfile -t -O ${#sw[@]} sw < <(cable 0 "$p" $((3 + p)) $((BASE + 101 + 2 * p)) $((BASE + 100 + 2 * p))); done
# The switch forwards the management ports of servers managed over a data NIC (guest ports 2000+K, 3000+K).
swnet=",hostfwd=tcp:127.0.0.1:$BASE-:22"
: >"$LAB/switch.dnat"
for k in $(printf '%s\n' "${!DATA[@]}" | sort -n); do
  swnet+=",hostfwd=tcp:127.0.0.1:$((BASE + 20 + k))-:$((2000 + k)),hostfwd=tcp:127.0.0.1:$((BASE + 40 + k))-:$((3000 + k))"
  printf '%s %s\n%s %s\n' $((2000 + k)) "198.18.10.$((20 + k))" $((3000 + k)) "192.0.2.$((20 + k))" >>"$LAB/switch.dnat"
done
if [[ -s $LAB/switch.dnat ]]; then
  # + LACP fallback on those servers' bonds (underlay-lacp-fallback): swp(2K-1) forwards while poK has no partner
  sw+=(-fw_cfg "name=opt/underlay/dnat,file=$LAB/switch.dnat" -fw_cfg "name=opt/underlay/lacp-fallback,string=$(printf '%s\n' "${!DATA[@]}" | sort -n | tr '\n' ' ')")
fi
boot switch switch 0 base "$swnet" "${sw[@]}"
echo "switch switch $BASE base eth0 -" >>"$LAB/lab.env"
for ((k = 1; k <= N; k++)); do
  args=()
  for n in 1 2; do p=$((2 * (k - 1) + n)); mapfile -t -O ${#args[@]} args < <(cable "$k" "$n" $((3 + n)) $((BASE + 100 + 2 * p)) $((BASE + 101 + 2 * p))); done
  vm=()
  if [[ -n ${DPDK[$k]:-} ]]; then
    # The IOMMU comes first on the bus (QEMU requires it before the devices it translates for).
    args=(-device intel-iommu,intremap=on "${args[@]}" -netdev "user,id=dpdk,net=198.18.3.0/24,restrict=on"
      -device "e1000e,netdev=dpdk,mac=$(mac "$k" 4),addr=0x8")
    vm=(VM_MEM="$DPDK_MEM" VM_SMP=2 VM_MACHINE=q35 VM_APPEND="intel_iommu=on iommu=pt default_hugepagesz=2M hugepagesz=2M hugepages=$DPDK_PAGES")
  fi
  if [[ -n ${DATA[$k]:-} ]]; then
    # No forward on its own management NIC (kept, unreachable, so the NIC names stay eth0..eth3).
    env_boot "${vm[@]}" -- "server$k" server "$k" "${IMAGES[k - 1]}" "" "${args[@]}" -fw_cfg "name=opt/underlay/eth1-address,string=198.18.10.$((20 + k))/24"
    echo "server$k server $((BASE + 20 + k)) ${IMAGES[k - 1]} eth1 $((BASE + 40 + k))" >>"$LAB/lab.env"
  else
    env_boot "${vm[@]}" -- "server$k" server "$k" "${IMAGES[k - 1]}" ",hostfwd=tcp:127.0.0.1:$((BASE + k))-:22" "${args[@]}"
    echo "server$k server $((BASE + k)) ${IMAGES[k - 1]} eth0 -" >>"$LAB/lab.env"
  fi
done
log "$( ((warm)) && echo "restored" || echo "started") $((N + 1)) VMs (-m $MEM, TCG; switch: base, servers: ${IMAGES[*]}${UNDERLAY_LAB_DATA_MGMT:+; managed over eth1: $UNDERLAY_LAB_DATA_MGMT}${UNDERLAY_LAB_DPDK:+; DPDK hosts (q35, intel-iommu, -m $DPDK_MEM): $UNDERLAY_LAB_DPDK}); waiting for SSH (max ${TIMEOUT}s)"

# Wait for each VM: the host key line on its serial console, then the SSH banner on its forward.
# The banner is read with bash's /dev/tcp (not ssh in a loop, which can hang in user-mode net).
banner() { timeout 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1 && head -c 4 <&3" 2>/dev/null; }
declare -A ready=()
while ((${#ready[@]} < N + 1)); do
  ((SECONDS - t0 < TIMEOUT)) || die "timeout: ready: ${!ready[*]}; see $LAB/*.serial.log"
  while read -r name role port image via newport; do
    [[ -n ${ready[$name]:-} ]] && continue
    kill -0 "$(cat "$LAB/$name.pid")" 2>/dev/null || die "$name's qemu exited; see $LAB/$name.qemu.log"
    if ((warm)); then   # printed on the serial console of the boot this one starts from, checked then
      key=$(awk -v n="$name" '$1 == n {print $2, $3}' "$entry/hostkeys")
    else
      key=$(grep -a -o 'UNDERLAY-HOSTKEY ssh-ed25519 [A-Za-z0-9+/=]* END' "$LAB/$name.serial.log" | tail -1 | cut -d' ' -f2,3 || true)
    fi
    [[ -n $key ]] && [[ $(banner "$port") == SSH- ]] || continue
    echo "[127.0.0.1]:$port $key" >>"$LAB/known_hosts"
    # the same host key answers on the new path once the management address is on VLAN 100
    [[ $newport == - ]] || echo "[127.0.0.1]:$newport $key" >>"$LAB/known_hosts"
    fp=$(echo "$key" | ssh-keygen -lf - | cut -d' ' -f2)
    # cross-check with the fingerprint the guest printed itself (catches a garbled serial line)
    ((warm)) || grep -a -q "UNDERLAY-HOSTKEY-FP 256 $fp " "$LAB/$name.serial.log" || die "$name: host key fingerprint mismatch"
    ready[$name]=$((SECONDS - t0))
    log "$name ($role, $image) SSH ready after ${ready[$name]}s on 127.0.0.1:$port$([[ $newport == - ]] || echo " (VLAN 100 path: $newport)"), host key $fp"
  done <"$LAB/lab.env"
  ((${#ready[@]} < N + 1)) && sleep 2
done

# ssh_config for convenience (lab/ssh.sh uses it); the plain equivalent is printed below.
# A server managed over its data NIC also gets "<name>-vlan100": the new path (after onboarding).
hostcfg() {
  printf 'Host %s\n  HostName 127.0.0.1\n  Port %s\n  User root\n  IdentityFile %s\n  IdentitiesOnly yes\n  UserKnownHostsFile %s\n  StrictHostKeyChecking yes\n  BatchMode yes\n\n' \
    "$1" "$2" "$LAB/id_ed25519" "$LAB/known_hosts"
}
while read -r name role port image via newport; do
  hostcfg "$name" "$port"
  [[ $newport == - ]] || hostcfg "$name-vlan100" "$newport"
done <"$LAB/lab.env" >"$LAB/ssh_config"

# vm_cmd NAME COMMAND: over the lab's shared SSH connection to the VM (lab/ssh.sh), bounded.
vm_cmd() { UNDERLAY_LAB_DIR=$LAB timeout 90 "$here/ssh.sh" "$1" "$2" </dev/null; }
vms() { awk '{print $1}' "$LAB/lab.env"; }
if ((warm)); then
  # The guests resume with the clock of the save: set each from the host (the command is built ~0.3 s before it
  # runs, on a connection already open), then — every clock right — make lldpd announce at once, so that no
  # neighbour stays expired by the jump until its next interval.
  for name in $(vms); do vm_cmd "$name" true & done; wait
  for name in $(vms); do vm_cmd "$name" "date -u -s @$(date +%s.%N) >/dev/null" & done
  for job in $(jobs -p); do wait "$job" || die "setting a guest clock failed"; done
  for name in $(vms); do vm_cmd "$name" "lldpcli update >/dev/null 2>&1 || true" & done; wait
  # QEMU's virtio-net VLAN filter table does not come back with -loadvm (measured: the switch's ports, not
  # promiscuous under a VLAN-filtering bridge, then dropped every tagged frame). The switch's ports go promiscuous,
  # so its bridge alone decides by its VLAN table, as a real switch ASIC does; a server has no VLAN at this point.
  vm_cmd switch 'for d in /sys/class/net/swp*; do ip link set dev "${d##*/}" promisc on; done' || die "switch: ports not set promiscuous"
elif ((BOOT_CACHE)) && [[ ! -e $entry ]]; then
  # Save this boot for the next lab of the same configuration once each guest has finished booting (bounded), so
  # that a warm start has no boot work left — and only a clean boot: on a loaded machine units with a start timeout
  # can fail (ifupdown-pre's `udevadm settle`, NetworkManager-wait-online), and a cached boot would carry that into
  # every lab after it. Each VM paused, savevm, its overlay copied while paused, resumed (lab/snapshot.sh export;
  # ≈ 1–3 s each, LACP's fast-rate timeout is 3 s). A failure only skips the cache (a VM left paused fails the lab).
  tmp=$entry.tmp.$$
  if mkdir "$tmp" 2>/dev/null; then
    for name in $(vms); do
      vm_cmd "$name" "timeout 80 systemctl is-system-running --wait >/dev/null; systemctl is-system-running; systemctl --failed --no-legend --plain | cut -d' ' -f1 | tr '\n' ' '" \
        >"$tmp/$name.state" 2>/dev/null &
    done
    wait
    ok=1
    for name in $(vms); do
      [[ $(head -1 "$tmp/$name.state") == running ]] && continue
      log "boot not cached: $name is $(head -1 "$tmp/$name.state" | tr -d '\n'), failed units: $(tail -n +2 "$tmp/$name.state")"
      ok=0
    done
    rm -f "$tmp"/*.state
    cp "$LAB/id_ed25519" "$LAB/id_ed25519.pub" "$tmp/"
    while ((ok)) && read -r name role port image via newport; do
      key=$(awk -v p="[127.0.0.1]:$port" '$1 == p {print $2, $3}' "$LAB/known_hosts")
      echo "$name $key" >>"$tmp/hostkeys"
      [[ -n $key ]] || { ok=0; break; }
      rc=0; UNDERLAY_LAB_DIR=$LAB bash "$here/snapshot.sh" export "$name" booted "$tmp/$name.qcow2" </dev/null || rc=$?
      ((rc != 3)) || die "$name stays paused after savevm"
      ((rc == 0)) || { ok=0; break; }
    done <"$LAB/lab.env"
    if ((ok)) && touch "$tmp/complete" && mv -T "$tmp" "$entry" 2>/dev/null; then
      log "boot saved for the next lab of this configuration: $entry ($(du -sh "$entry" | cut -f1))"
    else
      log "boot not cached (see above; the lab itself is up)"; rm -rf "$tmp"
    fi
  fi
fi
log "lab up in $((SECONDS - t0))s (image $img$( ((warm)) && echo ", from the boot cache $bkey"))"
while read -r name role port image via newport; do
  echo "  $name ($image): ssh -i $LAB/id_ed25519 -o UserKnownHostsFile=$LAB/known_hosts -p $port root@127.0.0.1" >&2
  [[ $newport == - ]] || echo "  $name over VLAN 100 after onboarding: ... -p $newport (lab/ssh.sh $name-vlan100)" >&2
done <"$LAB/lab.env"
