#!/usr/bin/env bash
# Builds the pinned vcsim (govmomi's vSphere API simulator: vCenter's SOAP API at /sdk, in one Go binary) for the
# vSphere driver and ESXi attach tests: once per machine into the tool cache (scripts/tool-cache.sh,
# ${UNDERLAY_CACHE:-/var/cache/underlay}/tools), linked as .tools/bin/vcsim. Idempotent: a warm run checks the
# cached entry against its MANIFEST and the link, nothing else.
#
# Source: the Go module proxy only (GOPROXY without `direct`); the govmomi module zip is checked against the
# checksum database (through the proxy) and against the h1: hash pinned below, and govmomi's own go.sum pins
# its dependencies. v0.46.3 is the last govmomi release whose module contains the vcsim command: from v0.47.0
# on, vcsim/ is a nested module with a `replace ../` directive, which `go install pkg@version` refuses.
# The module download cache is shared in the tool cache (go verifies every module against go.sum); the build
# cache is temporary. Nothing goes to $HOME.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/tool-cache.sh

VERSION=v0.46.3
MODULE=github.com/vmware/govmomi
MODULE_SUM='h1:zBn42Rl0WZBFhGao8Dy0MFRkbE4YNPqOu0OBd+ww6VM='
bin=.tools/bin/vcsim

GO=${GO:-/usr/local/go/bin/go}
[ -x "$GO" ] || GO=$(command -v go || true)
[ -n "$GO" ] || { echo "install-vcsim: no Go toolchain (expected /usr/local/go/bin/go)" >&2; exit 1; }
# The toolchain is an input: a new Go release builds a new binary.
key=$(tool_key vcsim "$VERSION" "$MODULE@$VERSION" "$MODULE_SUM" "$("$GO" env GOVERSION GOOS GOARCH | tr '\n' ' ')" "CGO_ENABLED=0 -trimpath")

if tool_verified "$key"; then
  [ "$(readlink "$bin" 2>/dev/null)" = "$TOOLS_CACHE/$key/vcsim" ] || tool_link "$key" vcsim "$bin"
  rm -rf .tools/vcsim-"$VERSION" .tools/go # the per-clone copies of earlier setups
  exit 0
fi
[ -L "$TOOLS_CACHE/$key" ] && tool_discard "$key"

out=$(tool_workdir "$key")
tmp=$(mktemp -d "$out.build.XXXXXX")
trap 'rm -rf "$tmp"; tool_abandon "$key" "$out"' EXIT
export GOMODCACHE="$TOOLS_CACHE/go-mod" GOCACHE="$tmp/cache" GOPATH="$tmp/path"
export GOPROXY=https://proxy.golang.org GOFLAGS=-modcacherw GOTOOLCHAIN=local CGO_ENABLED=0
mkdir -p "$GOMODCACHE" "$GOCACHE"

started=$(date +%s)
sum=$("$GO" mod download -json "$MODULE@$VERSION" | sed -n 's/^[[:space:]]*"Sum": "\(h1:[^"]*\)",\{0,1\}$/\1/p')
if [ "$sum" != "$MODULE_SUM" ]; then
  echo "install-vcsim: $MODULE@$VERSION has hash ${sum:-<none>}, pinned $MODULE_SUM: refusing" >&2
  exit 1
fi
GOBIN="$out" "$GO" install -trimpath "$MODULE/vcsim@$VERSION"
"$out/vcsim" -h >/dev/null 2>&1 || [ $? -eq 2 ] # -h exits 2 (flag package); anything else means a broken binary
tool_publish "$key" "$out"
tool_link "$key" vcsim "$bin"
rm -rf .tools/vcsim-"$VERSION" .tools/go
echo "install-vcsim: vcsim $VERSION built in $(( $(date +%s) - started )) s → $TOOLS_CACHE/$key, linked as $bin"
