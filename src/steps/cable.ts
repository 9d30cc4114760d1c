import { defineStep } from './define';

const speed = (mbps?: number): string => (!mbps ? '' : mbps >= 1000 ? ` @${mbps / 1000}G` : ` @${mbps}M`);

export const cable = defineStep({
  name: 'cable',
  title: 'cable check',
  activity: { apply: 'checkCabling', undo: 'rollbackCabling' },
  policy: {
    startToClose: '3m',
    heartbeat: '30s',
    maximumAttempts: 4,
    why: 'LLDP can take a full 30 s advertisement interval to be heard; one verify pass waits up to 75 s',
  },
  summary: (spec) => {
    switch (spec.hypervisor.kind) {
      case 'esxi':
        // The BMC's inventory: NICs matched by MAC.
        return (
          spec.nics
            .filter((n) => n.mac)
            .map((n) => `${n.name}=${n.mac}${n.cabled ? '' : ' (uncabled)'}${speed(n.speedMbps)}`)
            .join(', ') + ' · via BMC'
        );
      case 'hyperv':
        return `${spec.nics
          .filter((n) => n.cabled)
          .map((n) => n.name)
          .join(', ')}: Up${spec.nics.some((n) => n.speedMbps) ? ', speed' : ''}${spec.nics.some((n) => n.mac) ? ', MAC' : ''} (Get-NetAdapter)`;
      default:
        return (
          spec.nics
            .filter((n) => n.cabled)
            .map((n) => `${n.name}→${n.lldp ? `${n.lldp.switch}/${n.lldp.port}` : '?'}${speed(n.speedMbps)}`)
            .join(', ') || 'no cabled NIC'
        );
    }
  },
});
