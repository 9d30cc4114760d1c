import { defineStep } from './define';

export const sriov = defineStep({
  name: 'sriov',
  title: 'SR-IOV enable',
  activity: { apply: 'enableSriov', undo: 'rollbackSriov' },
  section: 'sriov',
  policy: {
    startToClose: '3m',
    heartbeat: '30s',
    maximumAttempts: 5,
    why: 'VF creation is quick; a PF busy with another change (EBUSY) is worth a retry with backoff',
  },
  summary: (spec) => {
    const s = spec.sriov;
    return s ? `${s.pf} · ${s.numVfs} VFs${s.vfioPci ? ' · vfio-pci' : ''}` : 'no SR-IOV';
  },
});
