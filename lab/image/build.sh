#!/usr/bin/env bash
# Build the underlay lab guest image once and cache it outside the repo:
#   ${UNDERLAY_CACHE:-/var/cache/underlay}/lab-image/<key>/{base.qcow2,vmlinuz,initrd.img,manifest}
# key = guest kernel ABI + hash(this script, lab/image/files/**, guest kernel package version, offline repo
# package list), so any recipe change or a new bookworm kernel makes a new image; other keys are pruned.
# The image carries an offline apt repository (/srv/underlay-repo, its only apt source) with exactly the .debs
# underlay's hypervisor step installs, none of them installed; the .debs are cached in ${UNDERLAY_CACHE}/lab-debs.
# Prints the image directory on stdout (progress goes to stderr). Warm call: ~2 s (apt-cache lookups).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=${UNDERLAY_CACHE:-/var/cache/underlay}/lab-image
debs=${UNDERLAY_CACHE:-/var/cache/underlay}/lab-debs   # downloaded .debs, reused by the next cold build
# What underlay's hypervisor step installs on Debian (src/activities/hypervisor.ts: KVM set + OVS for attach=ovs).
repo_pkgs=${UNDERLAY_LAB_REPO_PACKAGES:-qemu-system-x86 libvirt-daemon-system libvirt-clients openvswitch-switch}
log() { printf '[image %4ss] %s\n' "$SECONDS" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# The guest kernel is what the plain bookworm suite ships (debootstrap uses only that suite).
# Read it from the host's apt lists; they come from the same mirror debootstrap uses.
meta=$(apt-cache madison linux-image-amd64 | awk -F'|' '$3 ~ / bookworm\/main / {gsub(/ /, "", $2); print $2; exit}')
[[ -n $meta ]] || die "linux-image-amd64 not found in bookworm apt lists (run apt-get update)"
kpkg=$(apt-cache show "linux-image-amd64=$meta" | sed -n 's/^Depends: \(linux-image-[^ ,]*\).*/\1/p' | head -1)
kver=${kpkg#linux-image-}        # e.g. 6.1.0-50-amd64
[[ $kver == 6.* ]] || die "cannot resolve the kernel behind linux-image-amd64=$meta"

hash=$( { echo "kernel $kpkg $meta"; echo "repo $repo_pkgs"; cd "$here" && find build.sh files -type f | LC_ALL=C sort | xargs sha256sum; } \
        | sha256sum | cut -c1-12)
key=$kver-$hash
out=$root/$key
# Remove other keys and leftovers of interrupted builds (caller holds the lock), except
# an image a running VM still boots from (its -kernel path is on the QEMU command line).
prune() {
  local d
  for d in "$root"/* "$root"/.tmp.*; do
    [[ -e $d && $d != "$out" ]] || continue
    if grep -qsF "$d/" /proc/[0-9]*/cmdline; then log "keeping $d: a running VM uses it"; continue; fi
    log "pruning $d"; rm -rf "$d"
  done
}
mkdir -p "$root"
exec 9>"$root/.lock"                          # one builder at a time per cache
if [[ -f $out/done ]]; then
  flock -n 9 && prune                         # warm: prune only if no build is running
  log "cached: $out"; echo "$out"; exit 0
fi
flock -w 1800 9 || die "timed out waiting for $root/.lock"
if [[ -f $out/done ]]; then log "built by another process: $out"; echo "$out"; exit 0; fi

# Mirror: the bookworm URI configured for apt on this host (deb822 .sources or one-line format).
mirror=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '
  /^URIs:/ {u=$2} /^Suites:/ {for (i=2;i<=NF;i++) if ($i=="bookworm") {print u; exit}}')
[[ -n $mirror ]] || mirror=$(awk '$1=="deb" && $3=="bookworm" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
[[ -n $mirror ]] || die "no bookworm mirror in /etc/apt/sources.list{,.d/*.sources}"
log "cold build $key (kernel $kpkg $meta, mirror $mirror)"

tmp=$(mktemp -d "$root/.tmp.$key.XXXXXX")
rfs=$tmp/rootfs
cleanup() {
  for m in dev/pts dev proc sys; do mountpoint -q "$rfs/$m" 2>/dev/null && umount -l "$rfs/$m"; done
  rm -rf --one-file-system "$tmp"   # never descend into a bind mount that failed to detach
}
trap cleanup EXIT

pkgs=linux-image-amd64,$kpkg,openssh-server,iproute2,ethtool,lldpd,kmod,udev,systemd-sysv,sudo,pciutils,iputils-ping,netbase,initramfs-tools,zstd
debootstrap --variant=minbase --include="$pkgs" bookworm "$rfs" "$mirror" >"$tmp/debootstrap.log" 2>&1 \
  || { tail -20 "$tmp/debootstrap.log" >&2; die "debootstrap failed"; }
[[ -d $rfs/lib/modules/$kver ]] || die "guest got $(ls "$rfs/lib/modules"), expected $kver: host apt lists stale? run apt-get update"
log "debootstrap done ($(ls "$rfs/var/lib/dpkg/info/"*.list | wc -l) packages)"

# netdevsim: not built in Debian's kernel; build it out of tree against the exact guest kernel.
kdeb=$(dpkg-query --admindir="$rfs/var/lib/dpkg" -W -f='${Version}' "$kpkg")
dpkg-query -W -f='${Status}' "linux-headers-$kver" 2>/dev/null | grep -q 'ok installed' \
  || DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "linux-headers-$kver=$kdeb" >&2
(cd "$tmp" && apt-get download -q "linux-source-6.1=$kdeb" >&2)
dpkg-deb --fsys-tarfile "$tmp"/linux-source-6.1_*.deb | tar -xO ./usr/src/linux-source-6.1.tar.xz \
  | tar -xJ -C "$tmp" linux-source-6.1/drivers/net/netdevsim
make -s -C "/usr/src/linux-headers-$kver" M="$tmp/linux-source-6.1/drivers/net/netdevsim" CONFIG_NETDEVSIM=m modules >&2
install -D -m 644 "$tmp/linux-source-6.1/drivers/net/netdevsim/netdevsim.ko" "$rfs/lib/modules/$kver/updates/netdevsim.ko"
rm -rf "$tmp/linux-source-6.1" "$tmp"/linux-source-6.1_*.deb
log "netdevsim built"

# Lab files (boot unit, role scripts, sshd drop-in), then image-wide settings.
cp -a "$here/files/." "$rfs/"
chown -R root:root "$rfs/usr/local/sbin" "$rfs/etc/systemd/system/underlay-boot.service" "$rfs/etc/ssh/sshd_config.d" \
  "$rfs/etc/modprobe.d"
rm -f "$rfs"/etc/ssh/ssh_host_*                     # generated per VM at first boot
: >"$rfs/etc/machine-id"; rm -f "$rfs/var/lib/dbus/machine-id"   # per-VM machine-id
echo underlay >"$rfs/etc/hostname"
echo '/dev/vda / ext4 rw,noatime 0 0' >"$rfs/etc/fstab"
# Small initrd: only what finds the virtio root disk (36 MB -> ~6 MB, faster boot).
printf 'MODULES=list\n' >"$rfs/etc/initramfs-tools/conf.d/underlay"
printf '%s\n' virtio_pci virtio_blk virtio_net ext4 >"$rfs/etc/initramfs-tools/modules"
for m in proc sys dev dev/pts; do mount --bind "/$m" "$rfs/$m"; done
chroot "$rfs" depmod -a "$kver"
chroot "$rfs" update-initramfs -u -k "$kver" >&2
chroot "$rfs" systemctl enable -q underlay-boot.service
# Boot-time trims (each measured to matter or be useless in a lab VM).
chroot "$rfs" systemctl mask -q e2scrub_reap.service getty-static.service serial-getty@ttyS0.service \
  getty@tty1.service systemd-firstboot.service apt-daily.timer apt-daily-upgrade.timer \
  e2scrub_all.timer fstrim.timer dpkg-db-backup.timer

# Offline apt repository for underlay's hypervisor step. The guest can reach no mirror (restrict=on), and
# underlay runs `apt-get install --no-install-recommends ...` without `apt-get update`, so the image ships the
# .debs, their index and the apt lists, with the local folder as the only source.
#  1. resolve against this rootfs (same bookworm suite debootstrap used) what apt would install;
#  2. download only what the host cache lacks (apt skips .debs already in its archives dir);
#  3. index the exact set with dpkg-scanpackages (+ a Release file: without one apt 2.6 probes for
#     Packages.xz/.bz2/... and prints "Err: ... Method gave a blank filename" on every update);
#  4. switch sources, `apt-get update` offline and re-resolve from the local repo only (proves it is complete).
apt_q=(-q -o Acquire::Languages=none -o Dpkg::Use-Pty=0)
chroot "$rfs" apt-get "${apt_q[@]}" update >"$tmp/repo.log" 2>&1 || { tail "$tmp/repo.log" >&2; die "apt-get update (mirror) in the rootfs failed"; }
inst() { # the packages `apt-get install` would add, one "name version arch" per line; dies on upgrades/removals
  local sim
  sim=$(chroot "$rfs" env LC_ALL=C apt-get -s "${apt_q[@]}" install --no-install-recommends "$@") || die "cannot resolve $*: $sim"
  grep -q '^Remv \|^Inst [^ ]* \[' <<<"$sim" && die "resolving $* would upgrade or remove installed packages: $(grep '^Remv \|^Inst [^ ]* \[' <<<"$sim" | head -3)"
  sed -n 's/^Inst \([^ ]*\) (\([^ ]*\) .*\[\([a-z0-9]*\)\])$/\1 \2 \3/p' <<<"$sim" | LC_ALL=C sort
}
for p in $repo_pkgs; do   # the repository must hold these packages, not the image
  dpkg-query --admindir="$rfs/var/lib/dpkg" -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^ii' && die "$p is installed in the image"
done
want=$(inst $repo_pkgs)
[[ -n $want ]] || die "nothing to put in the repository for: $repo_pkgs"
arch=$rfs/var/cache/apt/archives
mkdir -p "$debs"
for f in "$debs"/*.deb; do [[ -e $f ]] && { ln "$f" "$arch/" 2>/dev/null || cp "$f" "$arch/"; }; done
chroot "$rfs" apt-get "${apt_q[@]}" -y install --download-only --no-install-recommends $repo_pkgs >"$tmp/dl.log" 2>&1 \
  || { tail "$tmp/dl.log" >&2; die "apt-get --download-only failed"; }
fetched=$(grep -c '^Get:' "$tmp/dl.log" || true)
cat "$tmp/dl.log" >>"$tmp/repo.log"; rm -f "$tmp/dl.log"
repo=$rfs/srv/underlay-repo
mkdir -p "$repo"
keep=()
while read -r name ver a; do
  f=${name}_${ver//:/%3a}_$a.deb            # apt's archive file name (epoch colon escaped)
  [[ -f $arch/$f ]] || die "apt did not download $f"
  mv "$arch/$f" "$repo/"
  [[ $repo/$f -ef $debs/$f ]] || ln -f "$repo/$f" "$debs/$f" 2>/dev/null || cp -f "$repo/$f" "$debs/$f"
  keep+=("$f")
done <<<"$want"
for f in "$debs"/*.deb; do   # the cache holds the current set only (old versions go)
  [[ -e $f && " ${keep[*]} " != *" ${f##*/} "* ]] && rm -f "$f"
done
(cd "$repo" && dpkg-scanpackages . /dev/null >Packages 2>>"$tmp/repo.log")
{ echo "Origin: underlay-lab"; echo "Label: underlay-lab"; echo "Date: $(LC_ALL=C date -u -R)"; echo "SHA256:"
  printf ' %s %s Packages\n' "$(sha256sum <"$repo/Packages" | cut -d' ' -f1)" "$(stat -c %s "$repo/Packages")"; } >"$repo/Release"
nrepo=$(grep -c '^Package: ' "$repo/Packages")
((nrepo == ${#keep[@]})) || die "Packages lists $nrepo entries, expected ${#keep[@]}"
echo 'deb [trusted=yes] file:/srv/underlay-repo ./' >"$rfs/etc/apt/sources.list"
rm -rf "$rfs"/etc/apt/sources.list.d/* "$rfs"/var/lib/apt/lists/*
upd=$(chroot "$rfs" apt-get "${apt_q[@]}" update 2>&1) || die "apt-get update (local repo) failed: $upd"
echo "$upd" >>"$tmp/repo.log"
grep -q '^\(Err\|W:\|E:\)' <<<"$upd" && die "apt-get update (local repo): $(grep -A1 '^\(Err\|W:\|E:\)' <<<"$upd" | head -4)"
[[ $(inst $repo_pkgs) == "$want" ]] || die "the local repository does not resolve to the set the mirror did"
inst qemu-system-x86 libvirt-daemon-system libvirt-clients >/dev/null   # the KVM step without OVS
log "offline repo: $nrepo packages, $(du -sh "$repo" | cut -f1) ($fetched downloaded, $((nrepo - fetched)) from $debs)"

chroot "$rfs" apt-get clean
for m in dev/pts dev proc sys; do umount "$rfs/$m"; done
# Keep the apt lists (the local repo's index: underlay installs without `apt-get update`).
rm -rf "$rfs"/var/lib/apt/lists/partial/* "$rfs"/var/log/*.log "$rfs"/var/log/apt/* "$rfs"/var/cache/debconf/*-old
cp "$rfs/boot/vmlinuz-$kver" "$tmp/vmlinuz"
cp "$rfs/boot/initrd.img-$kver" "$tmp/initrd.img"
log "rootfs configured (initrd $(du -h "$tmp/initrd.img" | cut -f1))"

# ext4 from the directory, then qcow2 (VMs run on per-VM overlays of it).
truncate -s 4G "$tmp/base.raw"
mkfs.ext4 -q -F -L underlay-root -d "$rfs" "$tmp/base.raw"
qemu-img convert -O qcow2 "$tmp/base.raw" "$tmp/base.qcow2"
rm -rf "$tmp/base.raw" "$rfs"
{
  echo "key=$key"; echo "kernel=$kver"; echo "kernel_package=$kpkg $kdeb"
  echo "mirror=$mirror"; echo "repo_packages=$repo_pkgs"; echo "repo_debs=$nrepo"
  echo "repo_versions=$(tr '\n' ',' <<<"$want" | sed 's/,$//')"
  echo "built=$(date -u +%FT%TZ)"; echo "build_seconds=$SECONDS"
} >"$tmp/manifest"
touch "$tmp/done"; chmod 755 "$tmp"
trap - EXIT
mv -T "$tmp" "$out"                      # atomic: a reader sees no image or a complete one
log "built $out ($(du -sh "$out" | cut -f1))"
prune
echo "$out"
