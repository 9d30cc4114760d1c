#!/usr/bin/env bash
# Capture real command outputs from a FRESHLY BOOTED lab (lab/up.sh) as parser fixtures in
# test/fixtures/linux/, walking server1 through: fresh -> bond negotiating -> LACP up + VLAN ->
# SR-IOV -> switch bond down (partner lost) -> switch lldpd stopped (no neighbours) -> undo.
# Naming: <command>.<state>.<ext> holds stdout byte for byte; siblings <file>.stderr and
# <file>.exitcode exist when stderr was non-empty / the exit code was not 0. Error-only
# captures are <name>.stderr + <name>.exitcode. CAPTURED.md is (re)written from the records.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
FX=$(dirname "$here")/test/fixtures/linux
S=server1
on() { "$here/ssh.sh" "$@"; }
log() { printf '[capture %4ss] %s\n' "$SECONDS" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
mkdir -p "$FX"
rec=$(mktemp); trap 'rm -f "$rec"' EXIT
record() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$rec"; }   # file vm state exitcode command

# cap VM STATE FILE COMMAND: regular capture (stdout is the fixture)
cap() {
  local vm=$1 st=$2 f=$3 cmd=$4 rc=0
  on "$vm" "$cmd" >"$FX/$f" 2>"$FX/$f.stderr" || rc=$?
  ((rc != 255)) || die "ssh to $vm failed for: $cmd"
  [[ -s $FX/$f.stderr ]] || rm -f "$FX/$f.stderr"
  if ((rc != 0)); then echo "$rc" >"$FX/$f.exitcode"; else rm -f "$FX/$f.exitcode"; fi
  record "$f" "$vm" "$st" "$rc" "$cmd"; log "$f (rc=$rc)"
}
# caperr VM STATE NAME COMMAND: an expected failure (stderr + exit code are the fixture)
caperr() {
  local vm=$1 st=$2 n=$3 cmd=$4 rc=0
  on "$vm" "$cmd" >"$FX/$n.stdout" 2>"$FX/$n.stderr" || rc=$?
  ((rc != 255)) || die "ssh to $vm failed for: $cmd"
  [[ -s $FX/$n.stdout ]] || rm -f "$FX/$n.stdout"
  echo "$rc" >"$FX/$n.exitcode"
  record "$n.stderr" "$vm" "$st" "$rc" "$cmd"; log "$n (rc=$rc)"
}
lldp_ifaces() { on "$1" lldpctl -f json0 | python3 -c 'import json,sys
print(" ".join(i["name"] for i in json.load(sys.stdin)["lldp"][0].get("interface",[])))'; }
wait_for() { # wait_for TRIES SLEEP DESCRIPTION COMMAND... (bounded)
  local n=$1 s=$2 what=$3 i; shift 3
  for ((i = 0; i < n; i++)); do "$@" && return 0; sleep "$s"; done
  die "timed out waiting for $what"
}

on "$S" 'test ! -e /sys/class/net/bond0' || die "$S is not fresh (bond0 exists): run lab/down.sh && lab/up.sh"
PF=$(on "$S" ls /sys/bus/netdevsim/devices/netdevsim10/net)
[[ $PF =~ ^eth[0-9]+$ ]] || die "netdevsim PF netdev not found ($PF)"
D=/sys/class/net/$PF/device
wait_for 12 5 "LLDP neighbours on eth1+eth2" bash -c "[[ \$('$here/ssh.sh' $S lldpctl -f json0 | grep -c '\"value\": \"swp[12]\"') == 2 ]]"

st="fresh: booted, nothing changed by underlay; eth1/eth2 admin-up without addresses, LLDP from leaf-01 on both"
SYSFS='for f in /sys/class/net/*/carrier /sys/class/net/*/speed; do echo "$f $(cat $f 2>&1)"; done'
NICSYSFS='for d in /sys/class/net/*; do n=${d##*/}; printf '\''%s\t%s\t%s\t%s\t%s\n'\'' "$n" "$(cat "$d/carrier" 2>/dev/null || echo -)" "$(cat "$d/speed" 2>/dev/null || echo -)" "$(cat "$d/operstate" 2>/dev/null || echo -)" "$(cat "$d/address" 2>/dev/null || echo -)"; done'
cap "$S" "$st" ip-j-d-link-show.fresh.json 'ip -j -d link show'
cap "$S" "$st" ip-j-d-link-show-dev-eth1.fresh.json 'ip -j -d link show dev eth1'
caperr "$S" "$st" ip-j-d-link-show-dev-bond0.absent 'ip -j -d link show dev bond0'
cap "$S" "$st" ip-j-addr-show.fresh.json 'ip -j addr show'
cap "$S" "$st" sys-class-net-carrier-speed.fresh.txt "$SYSFS"
cap "$S" "$st" nic-sysfs-table.fresh.tsv "$NICSYSFS"
cap "$S" "$st" lldpctl-json0.neighbours-eth1-eth2.json 'lldpctl -f json0'
cap "$S" "$st" os-release.txt 'cat /etc/os-release'
cap "$S" "$st" dpkg-query-status.tsv 'dpkg-query -W -f='\''${Package}\t${Status}\n'\'''
cap "$S" "$st" sriov-totalvfs-numvfs.0vfs.txt "cat $D/sriov_totalvfs $D/sriov_numvfs"
cap "$S" "$st" ip-j-d-link-show-dev-netdevsim-pf.0vfs.json "ip -j -d link show dev $PF"
cap "$S" "$st" cpuinfo-vmx-svm-count.txt "grep -Ec '(vmx|svm)' /proc/cpuinfo"
cap "$S" "$st" ls-l-dev-kvm.before-modprobe.txt 'ls -l /dev/kvm'
cap "$S" "$st" modprobe-kvm_amd.txt 'modprobe kvm_amd'
cap "$S" "after modprobe kvm_amd (emulated svm under TCG -cpu max)" ls-l-dev-kvm.txt 'ls -l /dev/kvm'
cap "$S" "$st" systemctl-is-active-lldpd.active.txt 'systemctl is-active lldpd'

# Bond just created: dumped in the same shell right after 'ip link set bond0 up', before LACP
# has had a round trip with the switch. The files are written in the guest and copied back with tar.
st="negotiating: bond0 created and up <1 s before, LACP not yet agreed with the switch"
on "$S" 'set -e; rm -rf /tmp/fx; mkdir /tmp/fx; cd /tmp/fx
ip link add bond0 type bond mode 802.3ad miimon 100 lacp_rate fast xmit_hash_policy layer3+4
for d in eth1 eth2; do ip link set $d down; ip link set $d master bond0; done
ip link set bond0 up
ip -j -d link show dev bond0 >ip-j-d-link-show-dev-bond0.negotiating.json
cat /proc/net/bonding/bond0 >proc-net-bonding-bond0.negotiating.txt
ip -j -d link show dev eth1 >ip-j-d-link-show-dev-eth1.negotiating.json
ip -j -d link show >ip-j-d-link-show.bond-negotiating.json
tar -cf - .' | tar -xf - -C "$FX"
cmds=('ip -j -d link show dev bond0' 'cat /proc/net/bonding/bond0' 'ip -j -d link show dev eth1' 'ip -j -d link show')
files=(ip-j-d-link-show-dev-bond0.negotiating.json proc-net-bonding-bond0.negotiating.txt ip-j-d-link-show-dev-eth1.negotiating.json ip-j-d-link-show.bond-negotiating.json)
for i in 0 1 2 3; do record "${files[i]}" "$S" "$st" 0 "${cmds[i]}"; done
log "negotiating: $(grep -m1 'Partner Mac' "$FX/proc-net-bonding-bond0.negotiating.txt")"

sw_mac=$(on switch cat /sys/class/net/po1/address)
lacp_up() { on "$S" cat /proc/net/bonding/bond0 | python3 -c 'import sys,re
t=sys.stdin.read(); agg=re.search(r"Active Aggregator Info:\n\tAggregator ID: (\d+)\n\tNumber of ports: (\d+)",t)
ids=re.findall(r"Slave Interface: .*\n(?:.*\n)*?Aggregator ID: (\d+)",t)
sys.exit(0 if agg and agg.group(2)=="2" and ids==[agg.group(1)]*2 and "Partner Mac Address: '"$sw_mac"'" in t else 1)'; }
wait_for 30 1 "LACP with switch po1 ($sw_mac)" lacp_up
on "$S" 'ip link add link bond0 name bond0.100 type vlan id 100 && ip addr add 192.0.2.10/24 dev bond0.100 && ip link set bond0.100 up'
wait_for 10 1 "192.0.2.1 reachable" on "$S" ping -c 1 -W 1 -I bond0.100 192.0.2.1 >/dev/null

st="lacp-up: bond0 (eth1+eth2) negotiated with leaf-01 po1, bond0.100 192.0.2.10/24 up"
cap "$S" "$st" ip-j-d-link-show.bond-up.json 'ip -j -d link show'
cap "$S" "$st" ip-j-d-link-show-dev-bond0.lacp-up.json 'ip -j -d link show dev bond0'
cap "$S" "$st" ip-j-d-link-show-dev-eth1.lacp-up.json 'ip -j -d link show dev eth1'
cap "$S" "$st" ip-j-addr-show.bond-up.json 'ip -j addr show'
cap "$S" "$st" proc-net-bonding-bond0.lacp-up.txt 'cat /proc/net/bonding/bond0'
cap "$S" "$st" sys-class-net-carrier-speed.bond-up.txt "$SYSFS"
cap "$S" "$st" lldpctl-json0.neighbours-bonded.json 'lldpctl -f json0'
cap switch "switch leaf-01 while server1's bond is negotiated" proc-net-bonding-po1.switch-lacp-up.txt 'cat /proc/net/bonding/po1'
cap "$S" "$st" ping-bond0.100-192.0.2.1.ok.txt 'ping -c 2 -W 1 -I bond0.100 192.0.2.1'
cap "$S" "$st; 192.0.2.99 is unused" ping-bond0.100-192.0.2.99.fail.txt 'ping -c 2 -W 1 -I bond0.100 192.0.2.99'

st="sriov: netdevsim PF $PF with sriov_numvfs=4"
on "$S" "echo 4 > $D/sriov_numvfs"
cap "$S" "$st" sriov-totalvfs-numvfs.4vfs.txt "cat $D/sriov_totalvfs $D/sriov_numvfs"
cap "$S" "$st" sriov-numvfs.4vfs.txt "cat $D/sriov_numvfs"
cap "$S" "$st" ip-j-d-link-show-dev-netdevsim-pf.4vfs.json "ip -j -d link show dev $PF"
# The same writes as underlay's writeTo(): as root the SSH command runs in root's login shell
# (bash); through sudo it runs in sh (dash). The error text differs, so capture both.
caperr "$S" "$st" sriov-numvfs-write-2-while-4.bash "printf '%s\n' 2 > $D/sriov_numvfs"
caperr "$S" "$st" sriov-numvfs-write-2-while-4.sh "sh -c \"printf '%s\n' 2 > $D/sriov_numvfs\""
caperr "$S" "$st" sriov-numvfs-write-99-while-4.bash "printf '%s\n' 99 > $D/sriov_numvfs"
caperr "$S" "$st" sriov-numvfs-write-99-while-4.sh "sh -c \"printf '%s\n' 99 > $D/sriov_numvfs\""
caperr "$S" "$st" sriov-numvfs-write-4-while-4.bash "printf '%s\n' 4 > $D/sriov_numvfs"
on "$S" "echo 0 > $D/sriov_numvfs"
st="sriov: back to 0 VFs"
cap "$S" "$st" sriov-numvfs.0vfs.txt "cat $D/sriov_numvfs"
# Above the limit from 0. netdevsim answers ENOMEM here; a PCI PF answers ERANGE (drivers/pci/iov.c).
caperr "$S" "$st" sriov-numvfs-write-99-while-0.bash "printf '%s\n' 99 > $D/sriov_numvfs"
caperr "$S" "$st" sriov-numvfs-write-99-while-0.sh "sh -c \"printf '%s\n' 99 > $D/sriov_numvfs\""

# Partner gone: the switch's bond admin-down stops its LACPDUs; with lacp_rate fast the
# server's ports time out after 3 s. (UDP "cables" carry no carrier, so links stay up.)
on switch ip link set po1 down
sleep 8
st="partner-down: switch po1 admin-down for 8 s (no LACPDUs), server links still up"
cap "$S" "$st" proc-net-bonding-bond0.partner-down.txt 'cat /proc/net/bonding/bond0'
cap "$S" "$st" ip-j-d-link-show-dev-bond0.partner-down.json 'ip -j -d link show dev bond0'
cap "$S" "$st" ip-j-d-link-show-dev-eth1.partner-down.json 'ip -j -d link show dev eth1'
cap "$S" "$st" ip-j-d-link-show.partner-down.json 'ip -j -d link show'
# The churn machine gives up after 60 s (churned).
sleep 62
st="partner-down-churned: switch po1 admin-down for 70 s"
cap "$S" "$st" proc-net-bonding-bond0.partner-down-churned.txt 'cat /proc/net/bonding/bond0'
cap "$S" "$st" ip-j-d-link-show-dev-eth1.partner-down-churned.json 'ip -j -d link show dev eth1'
on switch ip link set po1 up
wait_for 30 1 "LACP back after po1 up" lacp_up

# No LLDP neighbours: lldpd on the switch stopped (it sends a shutdown LLDPDU, TTL 0).
on switch systemctl stop lldpd
cap switch "switch leaf-01 with lldpd stopped" systemctl-is-active-lldpd.inactive.txt 'systemctl is-active lldpd'
wait_for 20 2 "server1 to drop its LLDP neighbours" bash -c "[[ -z \$('$here/ssh.sh' $S lldpctl -f json0 | grep -F swp) ]]"
cap "$S" "no neighbours: switch lldpd stopped; bond0 still up" lldpctl-json0.no-neighbours.json 'lldpctl -f json0'
on switch systemctl start lldpd

on "$S" 'ip link del bond0.100; ip link del bond0; ip link set eth1 up; ip link set eth2 up'
log "undone: server1 back to its boot state (except kvm_amd loaded)"

# CAPTURED.md
kernel=$(on "$S" 'uname -r; uname -v' | tr '\n' ' ')
{
  cat <<EOF
# Captured Linux command outputs

Raw outputs captured by \`lab/capture-fixtures.sh\` in the underlay QEMU lab (see \`lab/README.md\`).

- Date: $(date -u '+%Y-%m-%d %H:%M UTC')
- Host: Debian 12 bookworm guest ($(grep -o 'VERSION="[^"]*"' "$FX/os-release.txt")), kernel $kernel
  in the underlay lab under QEMU TCG ($(qemu-system-x86_64 --version | head -1 | sed 's/ Copyright.*//'), \`-cpu max -m 256\`, virtio-net NICs with
  \`speed=10000,duplex=full\`); netdevsim built out of tree for that kernel.
- server1: eth0 management (QEMU user-mode net 198.18.0.0/24, 198.18.0.15), eth1/eth2 cabled to switch
  leaf-01 swp1/swp2, $PF = netdevsim10 port 0 (SR-IOV PF stand-in; it has no \`sriov_totalvfs\`).
- switch (leaf-01): swp1+swp2 in 802.3ad bond po1 (lacp_rate fast) in VLAN-aware bridge br0, gateways 192.0.2.1/24
  (VLAN 100) and 198.18.1.1/24 (VLAN 200); lldpd with \`portidsubtype ifname\`, tx-interval 10 (TTL 40).
- Commands ran as root over SSH (\`ssh root@... '<command>'\`, i.e. in root's login shell bash) unless the command
  itself calls \`sh -c\`. MACs of the bond/bridge devices are random per boot (udev MACAddressPolicy=persistent
  with a fresh machine-id).

Observed behaviour worth knowing (all visible in the files):
- netdevsim has no \`sriov_totalvfs\` (cat fails, exit 1). Writing 99 while 0 VFs gives ENOMEM on netdevsim, where a
  PCI PF gives ERANGE; any non-zero write while VFs are enabled gives EBUSY (also for 99); writing the current value
  succeeds silently.
- The errno text is only in bash's message (\`bash: line 1: printf: write error: Device or resource busy\`); dash
  (\`sh -c\`, the sudo path) prints \`sh: 1: printf: printf: I/O error\` for every errno.
- Right after \`ip link set bond0 up\` each member sits in its own aggregator with actor state 199
  (defaulted+expired) and partner 00:00:00:00:00:00; negotiated members show 63/63 and one aggregator. With the partner
  gone, states drop to 71/79 and the partner MAC to zeros; churn states stay \`monitoring\` for 60 s, then
  the partner churn state is \`churned\` on both members and the actor's only on the member outside the active
  aggregator (eth1).
- /dev/kvm already exists before \`modprobe kvm_amd\`: udev loads kvm_amd at boot for the emulated svm flag.
- \`lldpctl -f json0\` with no neighbours prints \`{"lldp": [{ }]}\` spread over lines (one line holds only spaces).

Naming: \`<file>\` is stdout byte for byte; \`<file>.stderr\` / \`<file>.exitcode\` exist when stderr was non-empty /
the exit code was not 0. Expected-failure captures are \`<name>.stderr\` + \`<name>.exitcode\`.

| file | host | exit | command | state |
| --- | --- | --- | --- | --- |
EOF
  while IFS=$'\t' read -r f vm s rc cmd; do
    printf '| `%s` | %s | %s | `%s` | %s |\n' "$f" "$vm" "$rc" "${cmd//|/\\|}" "$s"
  done <"$rec"
} >"$FX/CAPTURED.md"
log "wrote $(ls "$FX" | wc -l) files to $FX"
