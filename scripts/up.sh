#!/usr/bin/env bash
# Runs underlay locally: installs what is missing, starts the Temporal dev server (Web UI :8233) and a worker
# in the foreground. Onboard from another terminal with `bin/underlay onboard <spec> --watch`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/dev-server.sh start
echo "underlay: worker starting; onboard with: bin/underlay onboard <spec.yaml> --watch   (Ctrl-C stops the worker)"
exec bin/underlay worker
