#!/usr/bin/env bash
# Installs everything underlay's tests and demo need on a fresh Debian 12 machine. Idempotent; fast when warm.
#   Debian packages (sshd for the transport tests, QEMU & co. for the lab), npm packages (npm ci), the pinned
#   Temporal CLI, vcsim and sushy-tools — built once per machine in ${UNDERLAY_CACHE:-/var/cache/underlay}/tools
#   and linked from .tools/ (scripts/tool-cache.sh). The lab's guest image is built (and cached) on first use
#   by lab/up.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

# chromium: the headless browser of the Web UI test (test/browser, driven by npm playwright-core);
# bsdutils: `script`, the pseudo-terminal of the `status --watch` test
# systemd: `systemd-analyze verify|security` of the shipped worker unit (test/deploy); openssl: the TLS tests' CA;
# xorriso: remastering the ESXi installer ISO (src/drivers/esxi/iso.ts)
# prometheus (promtool + server), prometheus-node-exporter (textfile collector): the monitoring tests (issue 17);
# iputils-ping, nftables: the health probe's gateway bursts and the loss the probe test injects in a namespace
# sudo (sudo, visudo): the least-privilege test — a login restricted to deploy/sudoers/underlay (issue 11 item 5)
APT_PACKAGES=(openssh-server openssh-client chromium bsdutils systemd openssl xorriso prometheus prometheus-node-exporter iputils-ping nftables sudo)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  sudo_cmd=(); [ "$(id -u)" = 0 ] || sudo_cmd=(sudo -n)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm ci only when the lock file changed since the last install (node_modules/.package-lock.json mirrors it).
if [ ! -f node_modules/.underlay-lock-stamp ] || ! cmp -s package-lock.json node_modules/.underlay-lock-stamp; then
  echo "setup: npm ci"
  npm ci --no-audit --no-fund
  cp package-lock.json node_modules/.underlay-lock-stamp
fi

bash scripts/install-temporal.sh
bash scripts/install-vcsim.sh
bash scripts/install-sushy.sh
bash lab/install-host-deps.sh
