/**
 * Facts of lab hosts that the persistence and drift tests check independently of the step code: the network
 * managers' files (hashed), a reboot waited for by boot id, what an onboarded host must hold (LACP with the switch,
 * gateways, VFs, the libvirt network), and the switch-side faults a drift check must see.
 */
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ServerSpec } from '../../src/spec/server';
import { labSpec, labVm, onHost } from './lab';

/** Every file of every network manager's configuration, underlay's backup store aside: path → sha256. */
export async function managerFiles(spec: ServerSpec): Promise<Record<string, string>> {
  return onHost(spec, async (run) => {
    const out = await run(
      'for d in /etc/network /etc/systemd/network /etc/NetworkManager/system-connections /etc/NetworkManager/conf.d /etc/udev/rules.d; do [ -d "$d" ] && find "$d" -type f; done | sort | while read -r f; do printf "%s %s\\n" "$f" "$(sha256sum < "$f" | cut -d" " -f1)"; done; for f in /usr/local/sbin/underlay-sriov-vfio; do [ -f "$f" ] && printf "%s %s\\n" "$f" "$(sha256sum < "$f" | cut -d" " -f1)"; done; true',
    );
    return Object.fromEntries(
      out
        .trim()
        .split('\n')
        .filter(Boolean)
        .map((l) => l.split(' ') as [string, string]),
    );
  });
}

export async function bootId(spec: ServerSpec): Promise<string> {
  return onHost(spec, async (run) => (await run('cat /proc/sys/kernel/random/boot_id')).trim());
}

/** Reboots the VM for real (systemctl reboot) and waits, bounded, until it answers with a new boot id. */
export async function rebootVm(spec: ServerSpec, timeoutMs = 12 * 60_000): Promise<number> {
  const before = await bootId(spec);
  const started = Date.now();
  // Delayed by a second so the command returns before the session is cut.
  await onHost(spec, async (run) => run('systemd-run --on-active=1 --timer-property=AccuracySec=100ms systemctl reboot'));
  for (let i = 0; Date.now() - started < timeoutMs && i < 400; i++) {
    await sleep(5_000);
    const now = await bootId(spec).catch(() => undefined);
    if (now && now !== before) return Date.now() - started;
  }
  throw new Error(`${spec.id} did not come back from the reboot within ${timeoutMs / 1000} s`);
}

/** The switch VM as a spec (only its management block matters: onHost). Any lab server's spec carries the lab key. */
export function switchSpec(server = 'server1'): ServerSpec {
  const s = labSpec(server);
  const sw = labVm('switch');
  return { ...s, id: 'lab-switch', management: { ...s.management, port: sw.port, hostKey: sw.hostKey } };
}

const serverIndex = (spec: ServerSpec) => Number(/^lab-server(\d+)$/.exec(spec.id)?.[1]);

/** Host facts an onboarding must produce, read without the step code: LACP with the switch, gateways, VFs, libvirt. */
export async function assertOnboarded(spec: ServerSpec, opts: { attach?: 'macvtap' | 'ovs' } = {}): Promise<void> {
  const k = serverIndex(spec);
  const switchMac = await onHost(switchSpec(), async (run) => JSON.parse(await run(`ip -j link show po${k}`))[0].address as string);
  await onHost(spec, async (run) => {
    // LACP may still be settling right after a boot: bounded wait for both ports in the partner's aggregator.
    let last = '';
    for (let i = 0; i < 60; i++) {
      const links = JSON.parse(await run('ip -j -d link show')) as Array<Record<string, any>>; // eslint-disable-line @typescript-eslint/no-explicit-any
      const bond = links.find((l) => l.ifname === 'bond0');
      const ad = bond?.linkinfo?.info_data?.ad_info;
      const inAgg = ['eth1', 'eth2'].every((m) => links.find((l) => l.ifname === m)?.linkinfo?.info_slave_data?.ad_aggregator_id === ad?.aggregator);
      last = JSON.stringify({ partner: ad?.partner_mac, ports: ad?.num_ports, inAgg });
      if (ad?.partner_mac === switchMac && ad?.num_ports === 2 && inAgg) break;
      await sleep(2_000);
    }
    assert.deepEqual(JSON.parse(last), { partner: switchMac, ports: 2, inAgg: true }, `${spec.id}: LACP with the switch`);
    for (const [dev, gw] of [
      ['bond0.100', '192.0.2.1'],
      ['bond0.200', '198.18.1.1'],
    ] as const) {
      let ok = false;
      for (let i = 0; i < 20 && !ok; i++) {
        ok = (await run(`ping -c 1 -W 2 -I ${dev} ${gw} >/dev/null 2>&1 && echo ok || echo no`)).trim() === 'ok';
        if (!ok) await sleep(2_000);
      }
      assert.ok(ok, `${spec.id}: ${gw} answers through ${dev}`);
    }
    assert.equal((await run('cat /sys/class/net/eth3/device/sriov_numvfs')).trim(), '4', `${spec.id}: 4 VFs`);
    assert.match(await run('virsh -c qemu:///system version'), /Running hypervisor: QEMU/);
    if ((opts.attach ?? 'macvtap') === 'macvtap') assert.match(await run('virsh -c qemu:///system net-info underlay-macvtap'), /Active:\s+yes/);
  });
}

/** Runs `cmd` on the switch. */
export async function onSwitch(cmd: string): Promise<string> {
  return onHost(switchSpec(), async (run) => run(cmd));
}

/** The switch ports cabled to serverK's eth1 and eth2. */
export function switchPorts(spec: ServerSpec): { eth1: string; eth2: string; bond: string } {
  const k = serverIndex(spec);
  return { eth1: `swp${2 * k - 1}`, eth2: `swp${2 * k}`, bond: `po${k}` };
}
