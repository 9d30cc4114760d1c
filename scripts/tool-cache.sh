# Sourced (not run) by scripts/install-{temporal,vcsim,sushy}.sh: pinned test tools are built once per
# machine into a cache outside the clone, and each clone links to them from .tools/. A clean clone then needs no
# rebuild; a pin change gives a new key, so it rebuilds.
#
#   ${UNDERLAY_CACHE:-/var/cache/underlay}/tools/<tool>-<version>-<hash>   a symlink, published atomically, to
#   ${UNDERLAY_CACHE:-/var/cache/underlay}/tools/.<tool>-<version>-<hash>.XXXXXX/   the tool, built in place
#
# <hash> is the sha256 (16 hex digits) of the pinned inputs each script declares (versions, wheel and module
# hashes, the requirement list, the interpreter or toolchain it builds with). A tool is built in its own new
# directory and never moved afterwards (a Python venv is not relocatable); a symlink renamed into place with
# RENAME_NOREPLACE publishes it, so a reader sees either no entry or a complete one, and of two concurrent
# builders one wins and the other removes its copy. Every entry carries a MANIFEST (sha256 of each file, and each
# symlink's target) written before publishing and checked each time a clone links to it: a corrupted or altered
# entry is removed and rebuilt, with the download hashes checked again. Entries of other keys are kept (other
# clones may pin other versions); remove ${UNDERLAY_CACHE}/tools to reclaim the space.

TOOLS_CACHE=${UNDERLAY_CACHE:-/var/cache/underlay}/tools

# tool_key <tool> <version> <pinned inputs…> → <tool>-<version>-<hash>
tool_key() {
  local tool=$1 version=$2
  shift 2
  printf '%s-%s-%s' "$tool" "$version" "$(printf '%s\n' "$@" | sha256sum | cut -c1-16)"
}

# The MANIFEST of a directory: sorted "sha256  path" lines of its files and "link path -> target" lines.
_tool_manifest() {
  (cd "$1" && find . -type f ! -name MANIFEST -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum &&
    find . -type l -printf 'link %p -> %l\n' | LC_ALL=C sort)
}

# tool_verified <key>: the published entry exists and matches its MANIFEST.
tool_verified() {
  local entry=$TOOLS_CACHE/$1
  [ -L "$entry" ] && [ -f "$entry/MANIFEST" ] && cmp -s <(_tool_manifest "$entry") "$entry/MANIFEST"
}

# tool_discard <key>: removes a published entry that failed verification (and the directory it points to).
tool_discard() {
  local entry=$TOOLS_CACHE/$1 target
  target=$(readlink "$entry" 2>/dev/null || true)
  echo "tool-cache: $entry does not match its MANIFEST: rebuilding" >&2
  rm -f "$entry"
  [ -n "$target" ] && rm -rf "${TOOLS_CACHE:?}/$target"
}

# tool_workdir <key> → a new, empty directory where the tool is built (and stays).
tool_workdir() {
  mkdir -p "$TOOLS_CACHE" 2>/dev/null && [ -w "$TOOLS_CACHE" ] || {
    echo "tool-cache: cannot write $TOOLS_CACHE: set UNDERLAY_CACHE to a writable directory" >&2
    return 1
  }
  # Leftovers of builds that were killed (an hour old, not the published one); younger ones may still be building.
  find "$TOOLS_CACHE" -mindepth 1 -maxdepth 1 -name ".$1.*" -mmin +60 ! -name "$(readlink "$TOOLS_CACHE/$1" 2>/dev/null || echo -)" \
    -exec rm -rf {} + 2>/dev/null || true
  mktemp -d "$TOOLS_CACHE/.$1.XXXXXX"
}

# tool_publish <key> <workdir>: writes the MANIFEST and links the entry to the workdir, unless another builder
# published the same key first (then the workdir is removed and theirs is used).
tool_publish() {
  local key=$1 dir=$2 link
  _tool_manifest "$dir" >"$dir/MANIFEST"
  chmod -R u+rwX,go+rX,go-w "$dir" # mktemp made it 0700; readable by every user of the cache, writable by none
  link=$(mktemp -u "$TOOLS_CACHE/.link-$key.XXXXXX")
  ln -s "$(basename "$dir")" "$link"
  mv -Tn "$link" "$TOOLS_CACHE/$key" || true # -n: RENAME_NOREPLACE; an existing entry wins
  rm -f "$link"
  if [ "$(readlink "$TOOLS_CACHE/$key")" != "$(basename "$dir")" ]; then
    rm -rf "$dir"
  fi
}

# tool_link <key> <path inside the entry> <link in the clone>: points a .tools/ path at the cached entry.
tool_link() {
  mkdir -p "$(dirname "$3")"
  ln -sfn "$TOOLS_CACHE/$1${2:+/$2}" "$3"
}

# tool_abandon <key> <workdir>: for an EXIT trap — removes the workdir unless the entry was published from it.
tool_abandon() {
  [ "$(readlink "$TOOLS_CACHE/$1" 2>/dev/null)" = "$(basename "$2")" ] || rm -rf "$2"
}

# tool_pip_venv <tool> <version> <requirements> <binary> <link> [smoke command args…]: a pinned Python tool as a
# venv in the cache (pip --require-hashes, wheels only, no dependency resolution beyond the list), linked as <link>.
# A warm run checks the cached entry (MANIFEST) and the link. The smoke command (run with the venv's bin/ first on
# PATH) must succeed before the entry is published. The interpreter is part of the key (venvs are not relocatable).
tool_pip_venv() {
  local tool=$1 version=$2 requirements=$3 binary=$4 link=$5 python key venv req
  shift 5
  python=$(python3 -c 'import platform, sys; print(sys.version.split()[0], sys.executable, platform.machine())')
  key=$(tool_key "$tool" "$version" "$requirements" "$python")
  if tool_verified "$key" && [ -x "$TOOLS_CACHE/$key/bin/$binary" ]; then
    [ "$(readlink "$link" 2>/dev/null)" = "$TOOLS_CACHE/$key" ] || { [ -L "$link" ] || rm -rf "$link"; tool_link "$key" "" "$link"; }
    return 0
  fi
  [ -L "$TOOLS_CACHE/$key" ] && tool_discard "$key"
  venv=$(tool_workdir "$key")
  req=$(mktemp)
  # shellcheck disable=SC2064 # expanded now: the trap runs after this function's locals are gone
  trap "rm -f '$req'; tool_abandon '$key' '$venv'" EXIT
  printf '%s\n' "$requirements" >"$req"
  python3 -m venv "$venv"
  if ! "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps --only-binary=:all: --require-hashes -r "$req"; then
    echo "install-$tool: pip install failed (the pinned hashes are for CPython 3.11 on x86_64; this is $("$venv/bin/python" -V))" >&2
    return 1
  fi
  "$venv/bin/pip" check --disable-pip-version-check >/dev/null
  if [ "$#" -gt 0 ]; then PATH="$venv/bin:$PATH" "$@" >/dev/null; fi
  tool_publish "$key" "$venv"
  [ -L "$link" ] || rm -rf "$link" # a per-clone directory of earlier setups
  tool_link "$key" "" "$link"
  echo "install-$tool: $tool $version → $TOOLS_CACHE/$key, linked as $link"
}
