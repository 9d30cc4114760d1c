#!/usr/bin/env bash
# Check a running lab end to end on one server (default server1; lab/up.sh first):
#  LLDP: leaf-01/swp(2K-1) on eth1, leaf-01/swp(2K) on eth2
#  bond0 802.3ad (lacp_rate fast, miimon 100, layer3+4) over eth1+eth2 negotiates with the
#    switch: partner MAC = switch poK MAC, both ports in the active aggregator with actor and
#    partner port state in sync+collecting+distributing
#  bond0.100 192.0.2.(9+K)/24 pings the switch gateway 192.0.2.1
#  netdevsim sriov_numvfs 0 -> 4 -> 0
# Then it undoes its changes (bond, VLAN), so the server is back to its boot state.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
S=${1:-server1}                       # serverK: cabled to swp(2K-1)/swp(2K) = switch bond poK
k=${S#server}; [[ $k =~ ^[0-9]+$ ]] || { echo "usage: lab/verify.sh [serverK]" >&2; exit 2; }
p1=swp$((2 * k - 1)) p2=swp$((2 * k)) ip=192.0.2.$((9 + k))
on() { "$here/ssh.sh" "$@"; }
log() { printf '[verify %4ss] %s\n' "$SECONDS" "$*" >&2; }
fail() { log "FAIL: $*"; exit 1; }
ok() { log "ok: $*"; }
py() { python3 -c "$@"; }

# LLDP (lldpd sends every 10 s on the switch: allow a few rounds after boot).
for ((i = 0; i < 12; i++)); do
  got=$(on "$S" lldpctl -f json0 | py 'import json,sys
d=json.load(sys.stdin)["lldp"][0]
for i in d.get("interface",[]):
  print(i["name"], i["chassis"][0]["name"][0]["value"], i["port"][0]["id"][0]["value"])' | sort | tr '\n' ';')
  [[ $got == *"eth1 leaf-01 $p1;"*"eth2 leaf-01 $p2;"* ]] && break
  sleep 5
done
[[ $got == *"eth1 leaf-01 $p1;"*"eth2 leaf-01 $p2;"* ]] || fail "LLDP neighbours: $got"
ok "LLDP $got"

on "$S" 'ip link del bond0 2>/dev/null; set -e
ip link add bond0 type bond mode 802.3ad miimon 100 lacp_rate fast xmit_hash_policy layer3+4
for d in eth1 eth2; do ip link set $d down; ip link set $d master bond0; done
ip link set bond0 up
ip link add link bond0 name bond0.100 type vlan id 100
ip addr add '"$ip"'/24 dev bond0.100
ip link set bond0.100 up'
sw_mac=$(on switch cat /sys/class/net/po$k/address)
check_bond='import json,sys
l=json.load(sys.stdin)
b=[x for x in l if x["ifname"]=="bond0"][0]["linkinfo"]["info_data"]
s={x["ifname"]:x["linkinfo"]["info_slave_data"] for x in l if x.get("master")=="bond0"}
agg=b["ad_info"]["aggregator"]
print(b["mode"], b["ad_lacp_rate"], b["miimon"], b["xmit_hash_policy"], b["ad_info"]["partner_mac"], b["ad_info"]["num_ports"],
      "+".join(sorted(n for n,v in s.items() if v["ad_aggregator_id"]==agg
               and v["ad_actor_oper_port_state"] & 56 == 56 and v["ad_partner_oper_port_state"] & 56 == 56)))'
want="802.3ad fast 100 layer3+4 $sw_mac 2 eth1+eth2"
for ((i = 0; i < 30; i++)); do   # LACP fast rate: negotiated within a few seconds
  got=$(on "$S" ip -j -d link show | py "$check_bond")
  [[ $got == "$want" ]] && break
  sleep 1
done
[[ $got == "$want" ]] || fail "bond0: got '$got', want '$want'"
ok "bond0 negotiated: mode rate miimon hash partner num_ports synced-members = $got"

on "$S" ping -c 2 -W 1 -I bond0.100 192.0.2.1 >/dev/null || fail "ping 192.0.2.1 over bond0.100"
ok "ping 192.0.2.1 via bond0.100"

on "$S" 'set -e; f=/sys/class/net/eth3/device/sriov_numvfs
echo 4 > $f; [ "$(cat $f)" = 4 ]; ip -j link show dev eth3 | grep -q "\"vf\":3"
echo 0 > $f; [ "$(cat $f)" = 0 ]' || fail "netdevsim sriov_numvfs 4 and back to 0"
ok "netdevsim eth3 sriov_numvfs 0 -> 4 (4 VFs in vfinfo_list) -> 0"

on "$S" 'ip link del bond0.100; ip link del bond0; ip link set eth1 up; ip link set eth2 up'
log "all checks passed; server back to boot state"
