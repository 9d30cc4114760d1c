#!/usr/bin/env bash
# Builds the pinned vcsim (govmomi's vSphere API simulator: vCenter's SOAP API at /sdk, in one Go binary) into
# .tools/, project-local, for the vSphere driver and ESXi attach tests. Idempotent: instant when present.
#
# Source: the Go module proxy only (GOPROXY without `direct`); the govmomi module zip is checked against the
# checksum database (through the proxy) and against the h1: hash pinned below, and govmomi's own go.sum pins
# its dependencies. v0.46.3 is the last govmomi release whose module contains the vcsim command: from v0.47.0
# on, vcsim/ is a nested module with a `replace ../` directive, which `go install pkg@version` refuses.
# Module and build caches live in .tools/go/ (git-ignored), never in $HOME.
# Prints nothing when already installed; the binary path is .tools/bin/vcsim.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=v0.46.3
MODULE=github.com/vmware/govmomi
MODULE_SUM='h1:zBn42Rl0WZBFhGao8Dy0MFRkbE4YNPqOu0OBd+ww6VM='
dest=.tools/vcsim-$VERSION
bin=.tools/bin/vcsim

if [ -x "$dest/vcsim" ] && [ "$(readlink "$bin" 2>/dev/null)" = "../vcsim-$VERSION/vcsim" ]; then
  exit 0
fi

GO=${GO:-/usr/local/go/bin/go}
[ -x "$GO" ] || GO=$(command -v go || true)
[ -n "$GO" ] || { echo "install-vcsim: no Go toolchain (expected /usr/local/go/bin/go)" >&2; exit 1; }

root=$(pwd)
export GOMODCACHE="$root/.tools/go/mod" GOCACHE="$root/.tools/go/cache" GOPATH="$root/.tools/go/path"
export GOPROXY=https://proxy.golang.org GOFLAGS=-modcacherw GOTOOLCHAIN=local CGO_ENABLED=0
mkdir -p .tools/bin "$GOMODCACHE" "$GOCACHE"
tmp=$(mktemp -d .tools/tmp.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

started=$(date +%s)
sum=$("$GO" mod download -json "$MODULE@$VERSION" | sed -n 's/^[[:space:]]*"Sum": "\(h1:[^"]*\)",\{0,1\}$/\1/p')
if [ "$sum" != "$MODULE_SUM" ]; then
  echo "install-vcsim: $MODULE@$VERSION has hash ${sum:-<none>}, pinned $MODULE_SUM: refusing" >&2
  exit 1
fi
GOBIN="$root/$tmp" "$GO" install -trimpath "$MODULE/vcsim@$VERSION"
"$tmp/vcsim" -h >/dev/null 2>&1 || [ $? -eq 2 ] # -h exits 2 (flag package); anything else means a broken binary
rm -rf "$dest"; mkdir -p "$dest"; mv "$tmp/vcsim" "$dest/vcsim"
ln -sfn "../vcsim-$VERSION/vcsim" "$bin"
# The build cache is only needed to rebuild; the binary is the cache. Keep the (small) module download cache.
"$GO" clean -cache >/dev/null 2>&1 || true
echo "install-vcsim: vcsim $VERSION built in $(( $(date +%s) - started )) s → $bin"
