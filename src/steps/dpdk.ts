import { defineStep } from './define';

export const dpdk = defineStep({
  name: 'dpdk',
  title: 'DPDK host prep',
  activity: { apply: 'prepareDpdk', undo: 'rollbackDpdk' },
  section: 'dpdk',
  policy: {
    startToClose: '30m',
    heartbeat: '2m',
    maximumAttempts: 3,
    why: 'turning the IOMMU on and reserving hugepages at boot takes one reboot, waited for inside one attempt (a server POSTs for minutes); the bindings are quick',
  },
  summary: (spec) => {
    const d = spec.dpdk;
    if (!d) return 'no DPDK';
    const pages = d.hugepages.count !== undefined ? `${d.hugepages.count}` : d.hugepages.perNode!.map((n) => `${n.node}:${n.count}`).join(',');
    return `IOMMU on · hugepages ${pages} × ${d.hugepages.size} · ${d.devices.join(',')} → ${d.driver}${d.ovs ? ` · OVS-DPDK pmd ${d.ovs.pmdCpuMask}` : ''}`;
  },
});
