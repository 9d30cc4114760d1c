#!/usr/bin/env bash
# underlay's test suite: typecheck, lint, then every test/**/*.test.ts on node's built-in runner.
# Needs `npm run setup` first (Debian packages, npm ci, the pinned Temporal CLI). Extra args go to node --test.
#
# Two runners side by side: the main QEMU lab files (one after the other) and everything else, two smaller lab files
# included. A TCG guest keeps about one core busy while the lab test waits on it, so the rest of the suite
# uses the other core instead of waiting for the lab (≈ 10 min saved on the 2-core CI machine); the VMs keep their
# fair share of the CPU (a starved switch VM misses LACP deadlines; UNDERLAY_LAB_NICE=N lowers them). Lab lines are
# prefixed `[lab]`. UNDERLAY_TEST_LAB=0 leaves the lab out (the closing line says so); =only runs just the lab.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== typecheck"; npx tsc --noEmit -p .
echo "== lint"; npm run -s lint
echo "== tests"
# The main lab files (onboard.lab on .lab, ports 22200+; persistence.lab on .lab-persist, 25600+) run one after the
# other on the lab lane, after the management move on ifupdown and NetworkManager (mgmt-move-managers.lab on
# .lab-move-mgr, 29200+, two servers side by side, 4–5.3 min with its boot cached). The reboot lab file (.lab-reboot, ports 23200+, one server; the package-fault scenarios run
# there too) and the management-move lab file (.lab-move, 24600+, one server managed over its data NIC) have labs of
# their own and mostly wait: they run on the other lane, among the VM-less files (node's runner takes the files in
# path order: after test/drivers, before test/spec). Each lab starts from a saved boot of its configuration
# (lab/up.sh's boot cache, outside the clone): seconds instead of minutes of TCG boot once a machine has booted that
# configuration. Measured once, before the boot cache: overlapping more VM work (the persistence lab next to the main
# lab's KVM install) made the whole run slower on 2 cores, not faster.
# The DPDK lab file (dpdk.lab on .lab-dpdk, 27200+, one q35 server with an emulated IOMMU, its own image cache)
# opens the lab lane.
side=(test/lab/reboot.lab.test.ts test/lab/mgmt-move.lab.test.ts)
mapfile -t lab < <(find test/lab -name '*.test.ts' | grep -vxF -f <(printf '%s\n' "${side[@]}") | sort)
mapfile -t rest < <(find test -name '*.test.ts' -not -path 'test/lab/*' | sort)
case "${UNDERLAY_TEST_LAB:-1}" in
  0) lab=() ;;
  only) rest=("${side[@]}") ;;
  *) rest+=("${side[@]}") ;;
esac
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
start=$(date +%s)

run() { # name prefix files...: output to $logs/name and, prefixed, to stdout
  local name=$1 prefix=$2; shift 2
  : >"$logs/$name"
  [ "$#" -gt 0 ] || { echo 0 >"$logs/$name.rc"; return; }
  set +e
  node --import tsx --test --test-reporter=spec "${extra[@]}" "$@" 2>&1 | tee "$logs/$name" | sed -u "s/^/$prefix/"
  echo "${PIPESTATUS[0]}" >"$logs/$name.rc"
  set -e
}
extra=("$@")
run lab '[lab] ' "${lab[@]}" &
labpid=$!
run rest '' "${rest[@]}"
wait "$labpid"

# One plain closing line, whatever the reporter: "N passed, M failed".
count() { grep -haE "^ℹ $1 [0-9]+" "$logs/lab" "$logs/rest" 2>/dev/null | awk '{s+=$3} END {print s+0}'; }
rc=0
for n in lab rest; do [ "$(cat "$logs/$n.rc")" = 0 ] || rc=1; done
echo "tests: $(count pass) passed, $(count fail) failed, $(count skipped) skipped ($(( ($(date +%s) - start) / 60 )) min; lab: ${#lab[@]} file(s), rest: ${#rest[@]})"
exit "$rc"
