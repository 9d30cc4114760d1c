#!/usr/bin/env bash
# Build the underlay lab guest images once and cache them outside the repo:
#   ${UNDERLAY_CACHE:-/var/cache/underlay}/lab-image/<key>/{base,fresh,ifupdown,networkd,nm}.qcow2,vmlinuz,initrd.img,manifest
# One debootstrap; the configured rootfs is copied per variant and packages are installed in each copy's chroot
# (policy-rc.d forbids service starts), then mkfs.ext4 -d + qemu-img convert. All variants share kernel and initrd.
#   base      no network manager (underlay-boot configures eth0): the switch VM
#   fresh     Debian's default ifupdown (+ ifenslave, vlan, bridge-utils), NO hypervisor packages: the default server
#   ifupdown  fresh + the KVM set and openvswitch-switch installed
#   networkd  systemd-networkd, no ifupdown; KVM set + openvswitch-switch installed
#   nm        NetworkManager (no-auto-default=*), no ifupdown; KVM set + openvswitch-switch installed
# Every manager variant describes eth0 (static 198.18.0.15/24), eth1 and eth2 (link up, no address) in the
# manager's own configuration (files/usr/local/sbin/underlay-netconfig), as an installer leaves a host.
# key = guest kernel ABI + hash(this script, lab/image/files/**, guest kernel package version, package lists),
# so any recipe change or a new bookworm kernel makes a new image; other keys are pruned.
# Every image carries an offline apt repository (/srv/underlay-repo, its only apt source) with exactly the .debs
# underlay's hypervisor step installs; the .debs (and the managers') are cached in ${UNDERLAY_CACHE}/lab-debs.
# Prints the image directory on stdout (progress goes to stderr). Warm call: ~2 s (apt-cache lookups).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=${UNDERLAY_CACHE:-/var/cache/underlay}/lab-image
debs=${UNDERLAY_CACHE:-/var/cache/underlay}/lab-debs   # downloaded .debs, reused by the next cold build
# What underlay's hypervisor step installs on Debian (src/activities/hypervisor.ts: KVM set + OVS for attach=ovs).
repo_pkgs=${UNDERLAY_LAB_REPO_PACKAGES:-qemu-system-x86 libvirt-daemon-system libvirt-clients openvswitch-switch}
# The network managers of the variants (from the mirror, not in the offline repo; .debs cached in lab-debs too).
ifupdown_pkgs="ifupdown ifenslave vlan bridge-utils"
nm_pkgs="network-manager"
variants="base fresh ifupdown networkd nm"
log() { printf '[image %4ss] %s\n' "$SECONDS" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# The guest kernel is what the plain bookworm suite ships (debootstrap uses only that suite).
# Read it from the host's apt lists; they come from the same mirror debootstrap uses.
meta=$(apt-cache madison linux-image-amd64 | awk -F'|' '$3 ~ / bookworm\/main / {gsub(/ /, "", $2); print $2; exit}')
[[ -n $meta ]] || die "linux-image-amd64 not found in bookworm apt lists (run apt-get update)"
kpkg=$(apt-cache show "linux-image-amd64=$meta" | sed -n 's/^Depends: \(linux-image-[^ ,]*\).*/\1/p' | head -1)
kver=${kpkg#linux-image-}        # e.g. 6.1.0-50-amd64
[[ $kver == 6.* ]] || die "cannot resolve the kernel behind linux-image-amd64=$meta"

hash=$( { echo "kernel $kpkg $meta"; echo "repo $repo_pkgs"; echo "variants $variants: $ifupdown_pkgs / $nm_pkgs"; cd "$here" && find build.sh files -type f | LC_ALL=C sort | xargs sha256sum; } \
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
  local r m
  for r in "$tmp"/*/; do
    for m in dev/pts dev proc sys; do mountpoint -q "$r$m" 2>/dev/null && umount -l "$r$m"; done
  done
  rm -rf --one-file-system "$tmp"   # never descend into a bind mount that failed to detach
}
binds() { local m; for m in proc sys dev dev/pts; do mount --bind "/$m" "$1/$m"; done; }
unbinds() { local m; for m in dev/pts dev proc sys; do umount "$1/$m"; done; }
trap cleanup EXIT

# nftables: the switch DNATs the forwarded management ports of servers managed over a data NIC.
pkgs=linux-image-amd64,$kpkg,openssh-server,iproute2,ethtool,lldpd,kmod,udev,systemd-sysv,sudo,pciutils,iputils-ping,netbase,initramfs-tools,zstd,nftables
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
chown -R root:root "$rfs/usr/local/sbin" "$rfs"/etc/systemd/system/underlay-*.service "$rfs/etc/ssh/sshd_config.d" \
  "$rfs/etc/modprobe.d"
rm -f "$rfs"/etc/ssh/ssh_host_*                     # generated per VM at first boot
: >"$rfs/etc/machine-id"; rm -f "$rfs/var/lib/dbus/machine-id"   # per-VM machine-id
echo underlay >"$rfs/etc/hostname"
echo '/dev/vda / ext4 rw,noatime 0 0' >"$rfs/etc/fstab"
# Small initrd: only what finds the virtio root disk (36 MB -> ~6 MB, faster boot).
printf 'MODULES=list\n' >"$rfs/etc/initramfs-tools/conf.d/underlay"
printf '%s\n' virtio_pci virtio_blk virtio_net ext4 >"$rfs/etc/initramfs-tools/modules"
binds "$rfs"
chroot "$rfs" depmod -a "$kver"
chroot "$rfs" update-initramfs -u -k "$kver" >&2
chroot "$rfs" systemctl enable -q underlay-boot.service underlay-lacp-fallback.service   # the latter: switch only (condition)
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
want_ifupdown=$(inst $ifupdown_pkgs)
want_nm=$(inst $nm_pkgs)
arch=$rfs/var/cache/apt/archives
mkdir -p "$debs"
for f in "$debs"/*.deb; do [[ -e $f ]] && { ln "$f" "$arch/" 2>/dev/null || cp "$f" "$arch/"; }; done
fetched=0
for p in "$repo_pkgs" "$ifupdown_pkgs" "$nm_pkgs"; do
  chroot "$rfs" apt-get "${apt_q[@]}" -y install --download-only --no-install-recommends $p >"$tmp/dl.log" 2>&1 \
    || { tail "$tmp/dl.log" >&2; die "apt-get --download-only $p failed"; }
  fetched=$((fetched + $(grep -c '^Get:' "$tmp/dl.log" || true)))
  cat "$tmp/dl.log" >>"$tmp/repo.log"; rm -f "$tmp/dl.log"
done
repo=$rfs/srv/underlay-repo
mkdir -p "$repo" "$tmp/set-ifupdown" "$tmp/set-nm"
keep=()
place() { # DIR: hard-link the .debs listed on stdin ("name version arch") from apt's archives into DIR and the cache
  local name ver a f
  while read -r name ver a; do
    f=${name}_${ver//:/%3a}_$a.deb          # apt's archive file name (epoch colon escaped)
    [[ -f $arch/$f ]] || die "apt did not download $f"
    ln -f "$arch/$f" "$1/$f"
    [[ $arch/$f -ef $debs/$f ]] || ln -f "$arch/$f" "$debs/$f" 2>/dev/null || cp -f "$arch/$f" "$debs/$f"
    keep+=("$f")
  done
}
place "$repo" <<<"$want"
place "$tmp/set-ifupdown" <<<"$want_ifupdown"
place "$tmp/set-nm" <<<"$want_nm"
for f in "$debs"/*.deb; do   # the cache holds the current sets only (old versions go)
  [[ -e $f && " ${keep[*]} " != *" ${f##*/} "* ]] && rm -f "$f"
done
rm -f "$arch"/*.deb
release() { # DIR: Packages + a Release file with its SHA256 (an apt "flat" repository)
  (cd "$1" && dpkg-scanpackages . /dev/null >Packages 2>>"$tmp/repo.log")
  { echo "Origin: underlay-lab"; echo "Label: underlay-lab"; echo "Date: $(LC_ALL=C date -u -R)"; echo "SHA256:"
    printf ' %s %s Packages\n' "$(sha256sum <"$1/Packages" | cut -d' ' -f1)" "$(stat -c %s "$1/Packages")"; } >"$1/Release"
}
release "$repo"
nrepo=$(grep -c '^Package: ' "$repo/Packages")
((nrepo == $(wc -l <<<"$want"))) || die "Packages lists $nrepo entries, expected $(wc -l <<<"$want")"
echo 'deb [trusted=yes] file:/srv/underlay-repo ./' >"$rfs/etc/apt/sources.list"
rm -rf "$rfs"/etc/apt/sources.list.d/* "$rfs"/var/lib/apt/lists/*
upd=$(chroot "$rfs" apt-get "${apt_q[@]}" update 2>&1) || die "apt-get update (local repo) failed: $upd"
echo "$upd" >>"$tmp/repo.log"
grep -q '^\(Err\|W:\|E:\)' <<<"$upd" && die "apt-get update (local repo): $(grep -A1 '^\(Err\|W:\|E:\)' <<<"$upd" | head -4)"
[[ $(inst $repo_pkgs) == "$want" ]] || die "the local repository does not resolve to the set the mirror did"
inst qemu-system-x86 libvirt-daemon-system libvirt-clients >/dev/null   # the KVM step without OVS
log "offline repo: $nrepo packages, $(du -sh "$repo" | cut -f1); managers: $(wc -l <<<"$want_ifupdown") (ifupdown), $(wc -l <<<"$want_nm") (nm) .debs; $fetched downloaded, the rest from $debs"

chroot "$rfs" apt-get clean
unbinds "$rfs"
cp "$rfs/boot/vmlinuz-$kver" "$tmp/vmlinuz"
cp "$rfs/boot/initrd.img-$kver" "$tmp/initrd.img"
log "rootfs configured (initrd $(du -h "$tmp/initrd.img" | cut -f1))"

# Image variants. Installs run in each copy's chroot with a policy-rc.d that refuses every service start
# (postinsts still enable units), with dpkg's unsafe-io (the image is written once, by mkfs below).
apt_i=(-y -o Dpkg::Options::=--force-unsafe-io --no-install-recommends)
vapt() { # ROOTFS APT-ARGS...: apt-get in a variant's chroot, log in $tmp/variants.log
  local r=$1; shift
  chroot "$r" env DEBIAN_FRONTEND=noninteractive LC_ALL=C apt-get "${apt_q[@]}" "$@" >>"$tmp/variants.log" 2>&1 \
    || { tail -20 "$tmp/variants.log" >&2; die "apt-get $* in ${r##*/} failed"; }
}
prep() { # ROOTFS: bind mounts + policy-rc.d
  binds "$1"
  printf '#!/bin/sh\n# underlay lab image build: no service starts in the chroot\nexit 101\n' >"$1/usr/sbin/policy-rc.d"
  chmod 755 "$1/usr/sbin/policy-rc.d"
}
managers() { # ROOTFS SET: install a manager's packages from a throw-away local source holding the set's .debs
  local r=$1 d=$1/tmp/underlay-extra pk=$ifupdown_pkgs
  [[ $2 == nm ]] && pk=$nm_pkgs
  mkdir -p "$d/lists/partial" "$d/cache/archives/partial" "$d/parts"
  ln "$tmp/set-$2"/*.deb "$d/"
  release "$d"
  echo 'deb [trusted=yes] file:/tmp/underlay-extra ./' >"$d/sources.list"
  # the image's own apt lists and sources stay as they are (the offline repo's)
  local o=(-o Dir::Etc::SourceList=/tmp/underlay-extra/sources.list -o Dir::Etc::SourceParts=/tmp/underlay-extra/parts
           -o Dir::State::Lists=/tmp/underlay-extra/lists -o Dir::Cache=/tmp/underlay-extra/cache)
  vapt "$r" "${o[@]}" update
  vapt "$r" "${o[@]}" "${apt_i[@]}" install $pk
  rm -rf "$d"
}
netconf() { # ROOTFS MANAGER: the manager's own configuration of eth0/eth1/eth2 (underlay-netconfig)
  echo "$2" >"$1/etc/underlay-net-manager"
  chroot "$1" /usr/local/sbin/underlay-netconfig
}
enabled() { # ROOTFS UNIT...: each unit enabled (dies otherwise)
  local r=$1 u st; shift
  for u; do st=$(chroot "$r" systemctl is-enabled "$u" 2>&1) || true
    [[ $st == enabled ]] || die "${r##*/}: $u is '$st', expected enabled"; done
}
absent() { # ROOTFS UNIT...: no such unit file
  local r=$1 u; shift
  for u; do chroot "$r" systemctl cat "$u" >/dev/null 2>&1 && die "${r##*/}: $u should not exist"; done; return 0
}
finish() { # ROOTFS VARIANT: identity and caches out, unmount, ext4 from the directory, then VARIANT.qcow2
  local r=$1 v=$2
  echo "$v" >"$r/etc/underlay-image"
  rm -f "$r/usr/sbin/policy-rc.d"
  mountpoint -q "$r/proc" || binds "$r"
  chroot "$r" apt-get clean
  unbinds "$r"
  : >"$r/etc/machine-id"; rm -f "$r/var/lib/dbus/machine-id" "$r"/etc/ssh/ssh_host_*   # per-VM, made at boot
  # Keep the apt lists (the local repo's index: underlay installs without `apt-get update`).
  rm -rf "$r"/var/lib/apt/lists/partial/* "$r"/var/log/*.log "$r"/var/log/apt/* "$r"/var/cache/debconf/*-old "$r"/tmp/*
  truncate -s 4G "$tmp/$v.raw"
  mkfs.ext4 -q -F -L underlay-root -d "$r" "$tmp/$v.raw"
  qemu-img convert -O qcow2 "$tmp/$v.raw" "$tmp/$v.qcow2"
  rm -f "$tmp/$v.raw"
  log "$v.qcow2 $(du -h "$tmp/$v.qcow2" | cut -f1), $(dpkg-query --admindir="$r/var/lib/dpkg" -W -f='${db:Status-Abbrev}\n' | grep -c '^ii') packages"
}
# base (the switch): no manager, underlay-boot configures eth0.
cp -a "$rfs" "$tmp/fresh"
finish "$rfs" base
# fresh: ifupdown as Debian installs it, no hypervisor packages.
prep "$tmp/fresh"
managers "$tmp/fresh" ifupdown
netconf "$tmp/fresh" ifupdown
enabled "$tmp/fresh" networking.service
finish "$tmp/fresh" fresh
rm -rf "$tmp/fresh"
# The KVM set + openvswitch-switch, installed once from the offline repo, then copied per manager.
kvm=$rfs
prep "$kvm"
vapt "$kvm" "${apt_i[@]}" install $repo_pkgs
# libvirt's `default` network (NAT + dnsmasq) must not autostart: the lab has neither. It comes with
# libvirt-daemon-config-network, a Recommends left out here; remove an autostart link should one appear.
rm -f "$kvm/etc/libvirt/qemu/networks/autostart/default.xml"
chroot "$kvm" systemctl enable -q libvirtd.service
enabled "$kvm" libvirtd.service openvswitch-switch.service
unbinds "$kvm"
log "KVM set + openvswitch-switch installed ($(wc -l <<<"$want") packages)"
cp -a "$kvm" "$tmp/ifupdown"
cp -a "$kvm" "$tmp/nm"
prep "$tmp/ifupdown"
managers "$tmp/ifupdown" ifupdown
netconf "$tmp/ifupdown" ifupdown
enabled "$tmp/ifupdown" networking.service
finish "$tmp/ifupdown" ifupdown
rm -rf "$tmp/ifupdown"
prep "$tmp/nm"
managers "$tmp/nm" nm
# No "Wired connection N" profiles for NICs without one (new VFs, eth3): NetworkManager.conf(5) no-auto-default.
printf '[main]\nno-auto-default=*\n' >"$tmp/nm/etc/NetworkManager/conf.d/underlay-lab.conf"
netconf "$tmp/nm" nm
enabled "$tmp/nm" NetworkManager.service
absent "$tmp/nm" networking.service
finish "$tmp/nm" nm
rm -rf "$tmp/nm"
binds "$kvm"
chroot "$kvm" systemctl enable -q systemd-networkd.service
netconf "$kvm" networkd
enabled "$kvm" systemd-networkd.service
absent "$kvm" networking.service NetworkManager.service
finish "$kvm" networkd
rm -rf "$kvm" "$tmp/set-ifupdown" "$tmp/set-nm"
{
  echo "key=$key"; echo "kernel=$kver"; echo "kernel_package=$kpkg $kdeb"
  echo "mirror=$mirror"; echo "repo_packages=$repo_pkgs"; echo "repo_debs=$nrepo"
  echo "repo_versions=$(tr '\n' ',' <<<"$want" | sed 's/,$//')"
  echo "variants=$variants"
  echo "ifupdown_versions=$(tr '\n' ',' <<<"$want_ifupdown" | sed 's/,$//')"
  echo "nm_versions=$(tr '\n' ',' <<<"$want_nm" | sed 's/,$//')"
  echo "built=$(date -u +%FT%TZ)"; echo "build_seconds=$SECONDS"
} >"$tmp/manifest"
touch "$tmp/done"; chmod 755 "$tmp"
trap - EXIT
mv -T "$tmp" "$out"                      # atomic: a reader sees no image or a complete one
log "built $out ($(du -sh "$out" | cut -f1))"
prune
echo "$out"
