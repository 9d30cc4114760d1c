/**
 * The step the reboot lab test runs as the `installHypervisor` activity: "the host has booted again since boot
 * X". Its apply is the production reboot-and-wait (src/activities/reboot.ts) with the Linux driver; everything
 * else about it is as small as a step can be. Shared by the in-process worker and the child worker the test kills.
 */
import { createActivities, stepSetOf, type StepSet } from '../../src/activities';
import { sshConnector } from '../../src/activities/connect';
import { LINUX_REBOOT, rebootAndWait, type RebootOutcome } from '../../src/activities/reboot';
import { wholeSpec, type Step } from '../../src/activities/step';
import { VerificationError } from '../../src/common/errors';
import { readBootId } from '../../src/drivers/linux/reboot';

export interface BootState {
  bootId: string;
}

/** Bounds for the lab VM (TCG: ~1.5 min to boot, more when another lab shares the CPUs). */
export const LAB_REBOOT = { timeoutMs: 10 * 60_000, intervalMs: 5_000 };

export function rebootProbeStep(bootBefore: string, onOutcome: (o: RebootOutcome) => void = () => undefined): Step<BootState> {
  return {
    name: 'hypervisor',
    want: wholeSpec,
    observe: async (io) => ({ bootId: await readBootId(io.host) }),
    plan: (_spec, observed) => (observed.bootId === bootBefore ? [{ field: 'boot id', from: observed.bootId, to: 'a new boot' }] : []),
    apply: async (io) => onOutcome(await rebootAndWait(io, LINUX_REBOOT, { reason: 'prove reboot-and-wait', ...LAB_REBOOT })),
    verify: async (io) => {
      const now = await readBootId(io.host);
      if (now === bootBefore)
        throw new VerificationError('the host has not rebooted', {
          host: io.host.label,
          step: 'hypervisor',
          field: 'boot id',
          expected: `not ${bootBefore}`,
          observed: now,
        });
    },
    undo: async () => undefined,
    diff: (a, b) => (a.bootId === b.bootId ? [] : [{ field: 'boot id', from: a.bootId, to: b.bootId }]),
  };
}

export function rebootActivities(bootBefore: string, onOutcome?: (o: RebootOutcome) => void) {
  const steps: StepSet = { ...stepSetOf('kvm'), hypervisor: rebootProbeStep(bootBefore, onOutcome) };
  return createActivities(sshConnector, steps);
}
