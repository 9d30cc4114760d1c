/**
 * Tiny Debian packages built on a lab guest (dpkg-deb) in a second flat apt repository, for package-database
 * faults a real install of the KVM set cannot produce on cue in seconds:
 *
 *   ul-base 1.0                 installed before ("pre-existing")
 *   ul-base 2.0  Depends ul-dep  what an install upgrades it to
 *   ul-dep, ul-leaf             new packages
 *   ul-slow      Depends ul-base (>= 2.0); its postinst sleeps while /run/ul-slow-hold exists (so dpkg can be
 *                interrupted in the middle of configuring, with ul-base 2.0 and ul-dep already configured)
 *   ul-top       Depends ul-base (>= 2.0), ul-leaf, ul-slow
 *
 * Installing ul-top on a host with ul-base 1.0 upgrades a pre-existing package to a version that needs a new
 * one: purging "everything added" would remove ul-base with ul-dep.
 */
import { onHost } from './lab';
import type { ServerSpec } from '../../src/spec/server';

export const UL_HOLD = '/run/ul-slow-hold';
export const UL_PACKAGES = ['ul-base', 'ul-dep', 'ul-leaf', 'ul-slow', 'ul-top'];

const SETUP = `set -e
d=/srv/ul-test-repo; rm -rf "$d" /tmp/ulpkg; mkdir -p "$d" /tmp/ulpkg
mk() {
  p=/tmp/ulpkg/$1-$2; mkdir -p "$p/DEBIAN"
  printf 'Package: %s\nVersion: %s\nArchitecture: all\nMaintainer: underlay tests <tests@example.invalid>\nDescription: underlay package-fault test package\n' "$1" "$2" >"$p/DEBIAN/control"
  if [ -n "$3" ]; then printf 'Depends: %s\n' "$3" >>"$p/DEBIAN/control"; fi
  if [ -n "$4" ]; then printf '#!/bin/sh\n%s\nexit 0\n' "$4" >"$p/DEBIAN/postinst"; chmod 755 "$p/DEBIAN/postinst"; fi
  dpkg-deb -Zgzip --build "$p" "$d/$1_$2_all.deb" >/dev/null
}
mk ul-base 1.0 '' ''
mk ul-base 2.0 'ul-dep' ''
mk ul-dep 1.0 '' ''
mk ul-leaf 1.0 '' ''
mk ul-slow 1.0 'ul-base (>= 2.0)' 'i=0; while [ -e /run/ul-slow-hold ] && [ $i -lt 300 ]; do sleep 1; i=$((i+1)); done'
mk ul-top 1.0 'ul-base (>= 2.0), ul-leaf, ul-slow' ''
cd "$d"
for f in *.deb; do dpkg-deb -f "$f"; echo "Filename: ./$f"; echo "Size: $(stat -c %s "$f")"; echo "SHA256: $(sha256sum "$f" | cut -d' ' -f1)"; echo; done >Packages
{ echo "Origin: underlay-test"; echo "Label: underlay-test"; echo "Date: $(LC_ALL=C date -u -R)"; echo "SHA256:"
  printf ' %s %s Packages\n' "$(sha256sum <Packages | cut -d' ' -f1)" "$(stat -c %s Packages)"; } >Release
echo 'deb [trusted=yes] file:/srv/ul-test-repo ./' >/etc/apt/sources.list.d/ul-test.list
apt-get update -qq -o Dir::Etc::sourcelist=/etc/apt/sources.list.d/ul-test.list -o Dir::Etc::sourceparts=- -o APT::Get::List-Cleanup=0
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o Dpkg::Use-Pty=0 ul-base=1.0 >/dev/null
dpkg-query -W -f='\${Version}' ul-base`;

const TEARDOWN = `rm -f /run/ul-slow-hold
pkill -f '[u]l-slow.postinst' || true
dpkg --configure -a >/dev/null 2>&1 || true
DEBIAN_FRONTEND=noninteractive dpkg --purge ul-top ul-slow ul-leaf ul-base ul-dep >/dev/null 2>&1 || true
rm -f /etc/apt/sources.list.d/ul-test.list /var/lib/apt/lists/_srv_ul-test-repo_* /var/lib/underlay/dpkg-job
rm -rf /srv/ul-test-repo /tmp/ulpkg
dpkg-query -W -f='\${Package}\n' 'ul-*' 2>/dev/null | wc -l`;

/** Builds the repository, adds it as an apt source and installs ul-base 1.0 (the pre-existing package). */
export async function setUpTestPackages(spec: ServerSpec): Promise<void> {
  const version = await onHost(spec, (run) => run(SETUP, 5 * 60_000));
  if (version.trim() !== '1.0') throw new Error(`ul-base 1.0 not installed: ${version}`);
}

/** Removes every ul-* package, the repository and its apt source, whatever state the test left them in. */
export async function tearDownTestPackages(spec: ServerSpec): Promise<void> {
  await onHost(spec, (run) => run(TEARDOWN, 5 * 60_000));
}

/** `name status version` of each ul-* package known to dpkg. */
export async function testPackageStates(spec: ServerSpec): Promise<Record<string, string>> {
  const out = await onHost(spec, (run) => run(`dpkg-query -W -f='\${Package} \${db:Status-Abbrev} \${Version}\n' 'ul-*' 2>/dev/null || true`));
  return Object.fromEntries(
    out
      .trim()
      .split('\n')
      .filter(Boolean)
      .map((l) => {
        const [name, status, version] = l.split(/\s+/);
        return [name!, `${status} ${version ?? ''}`.trim()];
      }),
  );
}
