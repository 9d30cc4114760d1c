#!/usr/bin/env bash
# Idempotently install the host packages the QEMU lab needs (Debian 12 host).
#  qemu-system-x86 qemu-utils : TCG guests + qcow2 overlays
#  debootstrap e2fsprogs zstd  : build the guest rootfs / ext4 image (mkfs.ext4 -d)
#  dpkg-dev                    : dpkg-scanpackages for offline repos (later lab steps)
#  socat                       : poll the forwarded SSH port for the "SSH-" banner
#  openssh-client              : ssh / ssh-keygen for the per-lab key
#  gcc make                    : out-of-tree netdevsim build (linux-headers-<guest kver> is
#                                installed by lab/image/build.sh, since it depends on the guest kernel)
#  xz-utils                    : linux-source-6.1 ships a .tar.xz
set -euo pipefail
pkgs=(qemu-system-x86 qemu-utils debootstrap e2fsprogs zstd socat dpkg-dev openssh-client gcc make xz-utils)
missing=()
for p in "${pkgs[@]}"; do
  # dpkg-query exits non-zero or reports a non-installed status for missing packages
  st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ $st == "install ok installed" ]] || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "host deps: all present (${pkgs[*]})"
  exit 0
fi
echo "host deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# apt lists may be absent on a fresh machine; update only when no list exists for the mirror
ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1 || apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
