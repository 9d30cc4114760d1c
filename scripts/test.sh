#!/usr/bin/env bash
# underlay's test suite: typecheck, lint, then every test/**/*.test.ts on node's built-in runner.
# Needs `npm run setup` first (Debian packages, npm ci, the pinned Temporal CLI). Extra args go to node --test.
#
# Two runners side by side: the QEMU lab files (test/lab/, one after the other: they share the lab's ports) and
# everything else. A TCG guest keeps about one core busy while the lab test waits on it, so the rest of the suite
# uses the other core instead of waiting for the lab (≈ 10 min saved on the 2-core CI machine); the VMs keep their
# fair share of the CPU (a starved switch VM misses LACP deadlines; UNDERLAY_LAB_NICE=N lowers them). Lab lines are
# prefixed `[lab]`. UNDERLAY_TEST_LAB=0 leaves the lab out (the closing line says so); =only runs just the lab.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== typecheck"; npx tsc --noEmit -p .
echo "== lint"; npm run -s lint
echo "== tests"
# The main lab files share .lab, one after the other. The reboot lab file has a lab of its own (.lab-reboot,
# ports 23200+, one server; the package-fault scenarios run there too) and mostly waits: it runs in the other lane.
side=test/lab/reboot.lab.test.ts
# The DPDK lab file (own lab, own image) is run by hand for now (npm run test:lab-dpdk): not yet in the CI budget.
dpdk=test/lab/dpdk.lab.test.ts
mapfile -t lab < <(find test/lab -name '*.test.ts' -not -path "$side" -not -path "$dpdk" | sort)
mapfile -t rest < <(find test -name '*.test.ts' -not -path 'test/lab/*' | sort)
case "${UNDERLAY_TEST_LAB:-1}" in
  0) lab=() ;;
  only) rest=("$side") ;;
  *) rest+=("$side") ;;
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
