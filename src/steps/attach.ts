import { defineStep } from './define';

export const attach = defineStep({
  name: 'attach',
  title: 'network attach',
  activity: { apply: 'attachNetwork', undo: 'rollbackNetworkAttach' },
  section: 'attach',
  policy: {
    startToClose: '5m',
    heartbeat: '30s',
    maximumAttempts: 5,
    why: 'a switch attach is a few commands or API calls; vCenter tasks may queue behind others',
  },
  summary: (spec) => {
    const a = spec.attach;
    const vlan = (v: number | undefined) => (v !== undefined ? ` · VLAN ${v}` : '');
    if (!a) return 'no attach';
    switch (a.kind) {
      case 'macvtap':
        return `macvtap ${a.mode} · network ${a.network} on ${a.device ?? spec.bond?.name ?? '?'}`;
      case 'ovs':
        return `OVS ${a.bridge} ← ${a.uplink ?? spec.bond?.name ?? '?'}${a.vlanPorts.map((p) => ` · ${p.name}:${p.vlan}`).join('')}`;
      case 'bridge':
        return `Linux bridge ${a.name} ← ${a.uplink ?? spec.bond?.name ?? '?'}`;
      case 'vds':
        return `vDS ${a.switch} ← ${a.uplinks.join(',')}${a.lacp ? ' (LACP)' : ''} · port group ${a.portgroup}${vlan(a.vlan)}${a.migrateVmk ? ` · ${a.migrateVmk} moved` : ''} · vCenter ${a.vcenter.address} ${a.datacenter}/${a.cluster ?? '(standalone)'}`;
      case 'vswitch':
        return `vSwitch ${a.name} ← ${a.uplinks.join(',')} · ${a.teaming} · port group ${a.portgroup}${vlan(a.vlan)}${a.mtu !== undefined ? ` · MTU ${a.mtu}` : ''} · esxcli over SSH`;
      case 'set':
        return `SET ${a.switchName} ← ${(a.nics ?? spec.bond?.members ?? []).join(',')} · ${a.loadBalancing}${a.managementVlan ? ` · host VLAN ${a.managementVlan}` : ''}`;
    }
  },
});
