import { defineStep } from './define';

export const bond = defineStep({
  name: 'bond',
  title: 'bond',
  activity: { apply: 'configureBond', undo: 'rollbackBond' },
  section: 'bond',
  policy: {
    startToClose: '5m',
    heartbeat: '30s',
    maximumAttempts: 5,
    why: 'LACP with rate slow needs up to 90 s to converge; a bond that still negotiates is retried, not failed',
  },
  summary: (spec) => {
    const b = spec.bond;
    return b ? `${b.name} ← ${b.members.join(',')} · ${b.mode}${b.mode === '802.3ad' ? ` · ${b.lacpRate}` : ''}` : 'no bond';
  },
});
