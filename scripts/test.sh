#!/usr/bin/env bash
# underlay's test suite: typecheck, lint, then every test/**/*.test.ts on node's built-in runner.
# Needs `npm run setup` first (Debian packages, npm ci, the pinned Temporal CLI). Extra args go to node --test.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== typecheck"; npx tsc --noEmit -p .
echo "== lint"; npm run -s lint
echo "== tests"
mapfile -t files < <(find test -name '*.test.ts' | sort)
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
node --import tsx --test --test-reporter=spec "$@" "${files[@]}" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
# One plain closing line, whatever the reporter: "N passed, M failed".
pass=$(grep -aE '^ℹ pass [0-9]+' "$log" | tail -1 | awk '{print $3}')
fail=$(grep -aE '^ℹ fail [0-9]+' "$log" | tail -1 | awk '{print $3}')
skip=$(grep -aE '^ℹ skipped [0-9]+' "$log" | tail -1 | awk '{print $3}')
echo "tests: ${pass:-0} passed, ${fail:-0} failed, ${skip:-0} skipped"
exit "$rc"
