import { defineStep } from './define';

export const vlan = defineStep({
  name: 'vlan',
  title: 'VLAN',
  activity: { apply: 'configureVlans', undo: 'rollbackVlans' },
  section: 'vlans',
  policy: {
    startToClose: '3m',
    heartbeat: '30s',
    maximumAttempts: 5,
    why: 'a gateway may answer only once the switch learnt the new MAC; verification pings for up to 45 s',
  },
  summary: (spec) =>
    spec.vlans.map((v) => `${v.name ?? `${v.parent}.${v.id}`}${v.address ? ` ${v.address}` : ''}${v.gateway ? ` → ${v.gateway}` : ''}`).join(', ') || 'no VLAN',
});
