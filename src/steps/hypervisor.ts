import { defineStep } from './define';

export const hypervisor = defineStep({
  name: 'hypervisor',
  title: 'hypervisor install',
  activity: { apply: 'installHypervisor', undo: 'rollbackHypervisor' },
  policy: {
    startToClose: '60m',
    heartbeat: '2m',
    maximumAttempts: 3,
    why: 'package installs and vendor installers are long and stream output (heartbeats); an ESXi install or a reboot is waited for inside one attempt',
  },
  summary: (spec) => {
    const h = spec.hypervisor;
    switch (h.kind) {
      case 'kvm':
        return `KVM · ${h.packages ? h.packages.join(' ') : 'qemu + libvirt'}${spec.attach?.kind === 'ovs' ? ' + Open vSwitch' : ''}`;
      case 'xen':
        return `Xen · xen-system-amd64${h.dom0MemoryMb ? ` · dom0 ${h.dom0MemoryMb} MiB` : ''} · one reboot`;
      case 'esxi':
        return `ESXi ${h.installer.version} · ${h.installer.iso.split('/').pop()} + kickstart via BMC ${h.bmc.address}`;
      case 'hyperv':
        return 'Hyper-V role · Install-WindowsFeature Hyper-V -IncludeManagementTools · one reboot';
    }
  },
});
