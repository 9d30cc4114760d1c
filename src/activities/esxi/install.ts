/**
 * Step 5 for ESXi, hypervisor install through the BMC (Redfish), no SSH: insert the installer ISO as virtual
 * media, set a one-time boot override to it (Cd, Once), power-cycle the server, wait — durably — until ESXi
 * answers on the management address, then eject the ISO and clear any override still pending.
 *
 * The power cycle happens once per activity: it is marked (io.mark) before it is sent and again once the BMC took
 * it, so a retry or a restarted worker waits for the install already under way instead of resetting the server
 * in the middle of it. The wait is measured from that mark, so it is the same deadline on every attempt.
 *
 * "ESXi answers" means: after the power cycle the host was seen down at least once, then accepts TCP
 * connections on management.address:probePort (443, hostd, by default). The installer (driven by the ISO's
 * kickstart, e.g. `ks=cdrom:/KS.CFG`) reboots into the installed system on its own.
 *
 * Undo returns what the BMC holds to the pre-state: media ejected (or the previous image re-inserted), power as it
 * was, boot override as it was. It cannot un-install ESXi from the disk.
 */
import { ConnectionError, VerificationError } from '../../common/errors';
import { resetSequence, type RedfishBmc } from '../../drivers/redfish/bmc';
import { tcpAnswers } from '../../transports/http';
import type { ServerSpec } from '../../spec/server';
import { diffState } from '../diff';
import { wholeSpec, type Change, type Step, type StepIo } from '../step';
import { esxiOf, withBmc, type EsxiSpec } from './bmc';

export interface EsxiInstallState {
  /** Redfish PowerState: On, Off, PoweringOn, PoweringOff. */
  power: string;
  /** The boot override; target 'None' when there is none. */
  bootOverride: { target: string; enabled: string };
  /** The CD/DVD virtual media device. */
  media: { image: string | null; inserted: boolean };
  /** Whether management.address:probePort accepts connections (not part of diff: the step does not own it). */
  answers: boolean;
}

/** io.marks keys (durable across retries and worker restarts). */
export const MARK_CYCLE = 'esxi.powerCycle';
export const MARK_DOWN = 'esxi.downSeen';
export const MARK_KICKSTART = 'esxi.kickstart';

interface CycleMark {
  state: 'requested' | 'issued';
  /** When the power cycle was requested (ms since the epoch): the install deadline counts from here. */
  at: number;
  resetTypes: string[];
}

const PROBE_TIMEOUT_MS = 3_000;
const POWER_WAIT = { timeoutMs: 180_000, intervalMs: 2_000 };

function overrideActive(o: EsxiInstallState['bootOverride'], target: string): boolean {
  return o.target === target && o.enabled !== 'Disabled';
}

function installerInserted(s: EsxiInstallState, esxi: EsxiSpec): boolean {
  return s.media.inserted && s.media.image === esxi.installerIso;
}

function probe(spec: ServerSpec, esxi: EsxiSpec): Promise<boolean> {
  return tcpAnswers(spec.management.address, esxi.probePort, PROBE_TIMEOUT_MS);
}

async function readState(bmc: RedfishBmc, spec: ServerSpec, esxi: EsxiSpec): Promise<EsxiInstallState> {
  const sys = await bmc.system();
  const media = await bmc.cdMedia();
  return {
    power: sys.powerState,
    bootOverride: { target: sys.boot.target ?? 'None', enabled: sys.boot.enabled ?? 'Disabled' },
    media: { image: media.image ?? null, inserted: media.inserted },
    answers: await probe(spec, esxi),
  };
}

function observe(io: StepIo): Promise<EsxiInstallState> {
  return withBmc(io, 'hypervisor', (bmc, esxi) => readState(bmc, io.spec, esxi));
}

function plan(spec: ServerSpec, o: EsxiInstallState): Change[] {
  const esxi = esxiOf(spec, 'hypervisor');
  const where = `${spec.management.address}:${esxi.probePort}`;
  const changes: Change[] = [];
  if (!o.answers) {
    if (!installerInserted(o, esxi)) changes.push({ field: 'virtualMedia', from: o.media.inserted ? o.media.image : 'empty', to: esxi.installerIso });
    if (!overrideActive(o.bootOverride, 'Cd'))
      changes.push({ field: 'bootOverride', from: `${o.bootOverride.target}/${o.bootOverride.enabled}`, to: 'Cd/Once' });
    changes.push({ field: 'power', from: o.power, to: 'power-cycled into the installer' });
    changes.push({ field: 'esxi', from: `no answer on ${where}`, to: `answering on ${where}` });
    return changes;
  }
  // ESXi answers: only what the install leaves behind may remain to be cleaned up.
  if (installerInserted(o, esxi)) changes.push({ field: 'virtualMedia', from: esxi.installerIso, to: 'empty' });
  if (overrideActive(o.bootOverride, 'Cd')) changes.push({ field: 'bootOverride', from: `Cd/${o.bootOverride.enabled}`, to: 'None' });
  return changes;
}

async function apply(io: StepIo, observed: EsxiInstallState, changes: Change[]): Promise<void> {
  await withBmc(io, 'hypervisor', async (bmc, esxi) => {
    if (!changes.some((c) => c.field === 'esxi')) {
      await cleanUp(io, bmc, esxi);
      return;
    }
    if (!installerInserted(observed, esxi)) {
      if (observed.media.inserted) await bmc.ejectMedia();
      io.progress(`inserting ${esxi.installerIso}`);
      await bmc.insertMedia(esxi.installerIso);
    }
    if (esxi.kickstart && io.marks[MARK_KICKSTART] !== esxi.kickstart) io.mark(MARK_KICKSTART, esxi.kickstart);
    if (!overrideActive(observed.bootOverride, 'Cd')) await bmc.setBootOverride({ target: 'Cd', enabled: 'Once' });

    const mark = io.marks[MARK_CYCLE] as CycleMark | null | undefined;
    if (mark) {
      io.progress(`power cycle ${mark.state} at ${new Date(mark.at).toISOString()} (${mark.resetTypes.join(' → ')}): waiting for it, not repeating it`);
      return;
    }
    const sys = await bmc.system();
    const resetTypes = resetSequence('cycle', sys.powerState, sys.resetTypes);
    const cycle: CycleMark = { state: 'requested', at: Date.now(), resetTypes };
    // Marked before it is sent: whatever happens next, no later attempt sends it again.
    io.mark(MARK_CYCLE, cycle);
    io.progress(`power cycle: ${resetTypes.join(' → ')}`);
    try {
      for (const [i, t] of resetTypes.entries()) {
        if (i > 0) await bmc.waitPowerState('Off', POWER_WAIT);
        await bmc.reset(t);
      }
    } catch (e) {
      // The BMC answered with a refusal (or we refused before sending): no reset happened, a retry may send it.
      // A lost connection or a timeout is ambiguous — the mark stays, and later attempts wait rather than reset.
      if (!(e instanceof ConnectionError)) io.mark(MARK_CYCLE, null);
      throw e;
    }
    io.mark(MARK_CYCLE, { ...cycle, state: 'issued' } satisfies CycleMark);
  });
}

/** After the install: eject the installer and clear a Cd override the BMC did not consume (some keep it). */
async function cleanUp(io: StepIo, bmc: RedfishBmc, esxi: EsxiSpec): Promise<void> {
  const media = await bmc.cdMedia();
  if (media.inserted && media.image === esxi.installerIso) {
    io.progress('ejecting the installer');
    await bmc.ejectMedia();
  }
  const sys = await bmc.system();
  if (overrideActive({ target: sys.boot.target ?? 'None', enabled: sys.boot.enabled ?? 'Disabled' }, 'Cd')) {
    await bmc.setBootOverride({ target: 'None', enabled: 'Disabled' });
  }
}

async function verify(io: StepIo): Promise<void> {
  const esxi = esxiOf(io.spec, 'hypervisor');
  const where = `${io.spec.management.address}:${esxi.probePort}`;
  const timeoutMs = esxi.installTimeoutSeconds * 1000;
  const cycle = io.marks[MARK_CYCLE] as CycleMark | null | undefined;
  // Without a power cycle in this activity the host answered already: one short look is enough.
  const deadline = cycle ? cycle.at + timeoutMs : Date.now() + Math.min(timeoutMs, 60_000);
  const intervalMs = Math.min(15_000, Math.max(1_000, Math.round(timeoutMs / 200)));
  const rounds = Math.ceil(timeoutMs / intervalMs) + 2;
  let up = false;
  for (let round = 0; round < rounds; round++) {
    up = await probe(io.spec, esxi);
    if (!up && cycle && !io.marks[MARK_DOWN]) io.mark(MARK_DOWN, Date.now());
    if (up && (!cycle || io.marks[MARK_DOWN])) break;
    if (Date.now() + intervalMs > deadline) {
      const why = up ? 'it answered throughout: the power cycle never took it down' : 'no answer';
      throw new VerificationError(`ESXi did not come up within ${esxi.installTimeoutSeconds} s of the power cycle`, {
        host: io.spec.id,
        step: 'hypervisor',
        field: 'esxi',
        expected: `connections accepted on ${where}`,
        observed: why,
      });
    }
    io.progress(`waiting for ESXi on ${where} (${Math.round((deadline - Date.now()) / 1000)} s left)`);
    await io.sleep(intervalMs);
  }
  if (!up)
    throw new VerificationError('ESXi did not come up', {
      host: io.spec.id,
      step: 'hypervisor',
      field: 'esxi',
      expected: `connections accepted on ${where}`,
      observed: 'no answer',
    });

  await withBmc(io, 'hypervisor', async (bmc) => {
    // A running ESXi means a powered system; a BMC may report the state change a little after the fact.
    await bmc.waitPowerState('On', POWER_WAIT);
    await cleanUp(io, bmc, esxi);
    const after = await readState(bmc, io.spec, esxi);
    const left = plan(io.spec, after);
    if (left.length) {
      throw new VerificationError('the install left state behind on the BMC', {
        host: io.spec.id,
        step: 'hypervisor',
        field: left.map((c) => c.field).join(', '),
        expected: left.map((c) => c.to),
        observed: left.map((c) => c.from),
      });
    }
  });
}

async function undo(io: StepIo, pre: EsxiInstallState, now: EsxiInstallState): Promise<void> {
  await withBmc(io, 'hypervisor', async (bmc) => {
    if (JSON.stringify(pre.media) !== JSON.stringify(now.media)) {
      if (now.media.inserted) await bmc.ejectMedia();
      if (pre.media.inserted && pre.media.image) await bmc.insertMedia(pre.media.image);
    }
    const wantOn = pre.power === 'On' || pre.power === 'PoweringOn';
    const isOn = now.power === 'On' || now.power === 'PoweringOn';
    if (wantOn !== isOn) {
      const sys = await bmc.system();
      for (const t of resetSequence(wantOn ? 'on' : 'off', sys.powerState, sys.resetTypes)) await bmc.reset(t);
      await bmc.waitPowerState(wantOn ? 'On' : 'Off', POWER_WAIT);
    }
    if (JSON.stringify(pre.bootOverride) !== JSON.stringify(now.bootOverride)) {
      const enabled = pre.bootOverride.enabled === 'Once' || pre.bootOverride.enabled === 'Continuous' ? pre.bootOverride.enabled : 'Disabled';
      await bmc.setBootOverride({ target: pre.bootOverride.target, enabled });
    }
  });
}

/** What the step owns on the BMC; `answers` is the host's, not the step's. */
function diff(a: EsxiInstallState, b: EsxiInstallState): Change[] {
  const own = (s: EsxiInstallState) => ({ power: s.power, bootOverride: s.bootOverride, media: s.media });
  return diffState(own(a), own(b));
}

export const esxiInstallStep: Step<EsxiInstallState> = {
  name: 'hypervisor',
  want: wholeSpec,
  connection: 'none',
  observe,
  plan,
  apply,
  verify,
  undo,
  diff,
};
