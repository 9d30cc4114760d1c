/**
 * Step 5 for ESXi, hypervisor install through the BMC (Redfish), no SSH:
 *
 *   1. make this host's installer ISO — the vendor ISO named by the spec (under the worker's UNDERLAY_ISO_DIR,
 *      pinned by SHA-256), remastered with a kickstart generated from the spec (`ks=cdrom:/KS.CFG` in both
 *      BOOT.CFGs) — and publish it on the worker's ISO server under a fresh per-install token (./media.ts);
 *   2. make the BMC's CD device trust the ISO server's certificate, where it can (VirtualMedia Certificates +
 *      VerifyCertificate), and insert the ISO's URL; set a one-time boot override to it (Cd, Once);
 *   3. power-cycle the server — once per activity: marked (io.mark) before it is sent, so a retry or a restarted
 *      worker waits for the install already under way instead of resetting the server in the middle of it;
 *   4. wait — durably, from the mark's time — until the host was seen down once and then its vSphere API answers
 *      over TLS pinned to the certificate the kickstart installed, as `HostAgent`, with the spec's version (and
 *      build); then eject the ISO, take the server's certificate off the BMC again, clear a Cd override the BMC
 *      kept, and delete the per-host ISO.
 *
 * Something that answers on the API port with another certificate is not the host this step installs, and this
 * step does not install over a running system: that is an error (HostKeyMismatchError), never an install plan.
 *
 * Undo returns what the BMC holds to the pre-state — media (ejected, or the earlier image re-inserted), the media
 * certificate and VerifyCertificate, power, boot override — and deletes the per-host ISO. It cannot un-install ESXi.
 */
import { access } from 'node:fs/promises';
import { ConnectionError, HostKeyMismatchError, UnsupportedPlatformError, VerificationError } from '../../common/errors';
import { resetSequence, type RedfishBmc } from '../../drivers/redfish/bmc';
import { VsphereClient } from '../../drivers/vsphere/client';
import { findByName } from '../../drivers/vsphere/dvs';
import { probeHostApi, type HostApiAnswer } from '../../drivers/vsphere/host-api';
import type { ServerSpec } from '../../spec/server';
import { isoFile, isoTokenHash, maskIsoUrl, parseIsoUrl } from '../../transports/iso-server';
import { diffState } from '../diff';
import { wholeSpec, type Change, type Step, type StepIo } from '../step';
import { esxiOf, withBmc, type EsxiSpec } from './bmc';
import { buildHostIso, isoConfig, isoServer, isoServerCertificatePem, removeHostIsos } from './media';

export interface EsxiInstallState {
  /** Redfish PowerState: On, Off, PoweringOn, PoweringOff. */
  power: string;
  /** The boot override; target 'None' when there is none. */
  bootOverride: { target: string; enabled: string };
  /**
   * The CD/DVD virtual media device. `image` is masked when it is a per-host ISO URL (its token never leaves the
   * BMC); `ours` says it is this server's per-host ISO. `verifyCertificate` is null where the BMC has no such setting.
   */
  media: { image: string | null; inserted: boolean; ours: boolean; verifyCertificate: boolean | null };
  /** The host's API on management.address:apiPort (not part of diff: the step does not own it). */
  api: ApiView;
  /**
   * Whether the spec's vCenter (attach.kind vds) has a host of this name — an installed, managed host — or null
   * without one. A managed host whose API does not answer is never reinstalled (not part of diff either).
   */
  inVcenter: boolean | null;
}

export interface ApiView {
  state: HostApiAnswer['state'];
  /** `VMware ESXi 8.0.3 build-24022510 (HostAgent)` when it answers; why not, when it does not. */
  detail: string;
  apiType?: string;
  version?: string;
  build?: string;
}

/** io.marks keys (durable across retries and worker restarts; none holds a secret). */
export const MARK_CYCLE = 'esxi.powerCycle';
export const MARK_DOWN = 'esxi.downSeen';
/** The per-host ISO of this activity: its token's hash (names the file), never the token. */
export const MARK_ISO = 'esxi.iso';
/** What the BMC's media trust was before this activity changed it. */
export const MARK_MEDIA_TRUST = 'esxi.mediaTrust';

interface CycleMark {
  state: 'requested' | 'issued';
  /** When the power cycle was requested (ms since the epoch): the install deadline counts from here. */
  at: number;
  resetTypes: string[];
}
interface IsoMark {
  tokenHash: string;
  at: number;
}
interface MediaTrustMark {
  verifyBefore: boolean | null;
  pinned: boolean;
}

const PROBE_TIMEOUT_MS = 5_000;
const POWER_WAIT = { timeoutMs: 180_000, intervalMs: 2_000 };

function overrideActive(o: EsxiInstallState['bootOverride'], target: string): boolean {
  return o.target === target && o.enabled !== 'Disabled';
}

function apiWhere(spec: ServerSpec, esxi: EsxiSpec): string {
  return `${spec.management.address}:${esxi.apiPort}`;
}

function expected(esxi: EsxiSpec): string {
  return `HostAgent, ESXi ${esxi.installer.version}${esxi.installer.build ? ` build ${esxi.installer.build}` : ''}`;
}

async function probe(spec: ServerSpec, esxi: EsxiSpec): Promise<ApiView> {
  const a = await probeHostApi({ address: spec.management.address, port: esxi.apiPort, pin: esxi.hostCertificate, label: spec.id }, PROBE_TIMEOUT_MS);
  if (a.state !== 'answers') return { state: a.state, detail: a.reason };
  return {
    state: 'answers',
    detail: `${a.product.fullName} (${a.product.apiType || 'no apiType'})`,
    apiType: a.product.apiType,
    version: a.product.version,
    build: a.product.build,
  };
}

/** Whether what answers is the ESXi the spec asks for. */
function isExpected(api: ApiView, esxi: EsxiSpec): boolean {
  return (
    api.state === 'answers' &&
    api.apiType === 'HostAgent' &&
    api.version === esxi.installer.version &&
    (!esxi.installer.build || api.build === esxi.installer.build)
  );
}

/** Whether the spec's vCenter knows a host by the management address (null: the spec names no vCenter). */
async function inVcenter(spec: ServerSpec): Promise<boolean | null> {
  const a = spec.attach;
  if (a?.kind !== 'vds') return null;
  const c = await VsphereClient.connect({
    address: a.vcenter.address,
    port: a.vcenter.port,
    credentials: a.vcenter.credentials,
    caFile: a.vcenter.caFile,
    label: spec.id,
  });
  try {
    return (await findByName(c, 'HostSystem', spec.management.address)).length > 0;
  } finally {
    await c.close();
  }
}

async function readState(bmc: RedfishBmc, spec: ServerSpec, esxi: EsxiSpec): Promise<EsxiInstallState> {
  const sys = await bmc.system();
  const media = await bmc.cdMedia();
  const iso = media.image ? parseIsoUrl(media.image) : undefined;
  return {
    power: sys.powerState,
    bootOverride: { target: sys.boot.target ?? 'None', enabled: sys.boot.enabled ?? 'Disabled' },
    media: {
      image: media.image ? maskIsoUrl(media.image) : null,
      inserted: media.inserted,
      ours: !!iso && iso.serverId === spec.id,
      verifyCertificate: media.verifyCertificate ?? null,
    },
    api: await probe(spec, esxi),
    inVcenter: await inVcenter(spec),
  };
}

async function observe(io: StepIo): Promise<EsxiInstallState> {
  const state = await withBmc(io, 'hypervisor', (bmc, esxi) => readState(bmc, io.spec, esxi));
  // While this activity's install runs (a retry, a restarted worker), another certificate is the installer's or the
  // first boot's own, before %firstboot replaced it: the host is not up yet, and not someone else's system.
  if (io.marks[MARK_CYCLE] && state.api.state === 'untrusted')
    state.api = { state: 'down', detail: `not the pinned certificate yet (install under way): ${state.api.detail}` };
  return state;
}

function refuseForeign(spec: ServerSpec, esxi: EsxiSpec, api: ApiView): void {
  if (api.state === 'untrusted') {
    throw new HostKeyMismatchError(
      `something answers on ${apiWhere(spec, esxi)} with another certificate than hypervisor.hostCertificate: not installing over a running system (power it off to reinstall; a vCenter in vmca certificate mode replaces host certificates)`,
      { host: spec.id, step: 'hypervisor', field: 'hypervisor.hostCertificate', expected: esxi.hostCertificate.fingerprint, observed: api.detail },
    );
  }
  if (api.state === 'answers' && !isExpected(api, esxi)) {
    throw new UnsupportedPlatformError(`${apiWhere(spec, esxi)} answers, but not as the ESXi the spec expects (this step installs; it does not upgrade)`, {
      host: spec.id,
      step: 'hypervisor',
      field: 'hypervisor.installer.version',
      expected: expected(esxi),
      observed: api.detail,
    });
  }
}

function plan(spec: ServerSpec, o: EsxiInstallState): Change[] {
  const esxi = esxiOf(spec, 'hypervisor');
  const where = apiWhere(spec, esxi);
  refuseForeign(spec, esxi, o.api);
  const changes: Change[] = [];
  if (o.api.state === 'down' && o.inVcenter) {
    // An installed host that stopped answering (a network fault, a reboot) must not be wiped by a re-run or a
    // drift remediation: the one sign of "installed and managed" every onboarded host has is its place in vCenter.
    throw new VerificationError(
      `vCenter manages ${spec.management.address}, but its API does not answer: not reinstalling a managed host (remove it from vCenter to reinstall)`,
      {
        host: spec.id,
        step: 'hypervisor',
        field: 'esxi',
        expected: `${expected(esxi)} answering on ${where}`,
        observed: o.api.detail,
      },
    );
  }
  if (o.api.state === 'down') {
    if (!(o.media.inserted && o.media.ours)) {
      changes.push({ field: 'virtualMedia', from: o.media.inserted ? o.media.image : 'empty', to: `${spec.id}.iso (${esxi.installer.iso} + kickstart)` });
    }
    if (!overrideActive(o.bootOverride, 'Cd'))
      changes.push({ field: 'bootOverride', from: `${o.bootOverride.target}/${o.bootOverride.enabled}`, to: 'Cd/Once' });
    changes.push({ field: 'power', from: o.power, to: 'power-cycled into the installer' });
    changes.push({ field: 'esxi', from: `no API on ${where} (${o.api.detail})`, to: `${expected(esxi)} on ${where}` });
    return changes;
  }
  // ESXi answers as expected: only what the install leaves behind may remain to be cleaned up.
  if (o.media.inserted && o.media.ours) changes.push({ field: 'virtualMedia', from: o.media.image, to: 'empty' });
  if (overrideActive(o.bootOverride, 'Cd')) changes.push({ field: 'bootOverride', from: `Cd/${o.bootOverride.enabled}`, to: 'None' });
  return changes;
}

async function apply(io: StepIo, observed: EsxiInstallState, changes: Change[]): Promise<void> {
  await withBmc(io, 'hypervisor', async (bmc, esxi) => {
    if (!changes.some((c) => c.field === 'esxi')) {
      await cleanUp(io, bmc);
      return;
    }
    const c = isoConfig();
    const isoMark = io.marks[MARK_ISO] as IsoMark | undefined;
    // A retry finds its ISO inserted and still served here: keep it (the installer may be reading it).
    const current = await bmc.cdMedia();
    const parsed = current.image ? parseIsoUrl(current.image) : undefined;
    const keep =
      current.inserted &&
      parsed?.serverId === io.spec.id &&
      isoMark?.tokenHash === isoTokenHash(parsed.token) &&
      (await access(isoFile(c.workDir, io.spec.id, isoMark.tokenHash)).then(
        () => true,
        () => false,
      ));
    if (!keep) {
      const server = await isoServer(c);
      const iso = await buildHostIso(io.spec, esxi, server, c, (n) => io.progress(n));
      io.mark(MARK_ISO, { tokenHash: iso.tokenHash, at: Date.now() } satisfies IsoMark);
      // Earlier ISOs of this server (an interrupted attempt) are never served again.
      await removeHostIsos(io.spec.id, iso.tokenHash, c);
      if (current.inserted) await bmc.ejectMedia();
      if (!io.marks[MARK_MEDIA_TRUST]) io.mark(MARK_MEDIA_TRUST, { verifyBefore: current.verifyCertificate ?? null, pinned: false } satisfies MediaTrustMark);
      const trust = await bmc.trustMediaCertificate(server.certificatePem);
      io.mark(MARK_MEDIA_TRUST, { ...(io.marks[MARK_MEDIA_TRUST] as MediaTrustMark), pinned: trust === 'pinned' } satisfies MediaTrustMark);
      io.progress(
        `inserting ${maskIsoUrl(iso.url)} (BMC ${trust === 'pinned' ? 'verifies the ISO server certificate' : 'cannot pin the ISO server certificate'})`,
      );
      await bmc.insertMedia(iso.url, iso.token);
    }
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

/**
 * After the install (or with `pre`, on undo): eject this server's ISO, take the ISO server's certificate off the
 * BMC and put VerifyCertificate back, clear a Cd override the BMC did not consume (some keep it), delete the ISO.
 */
async function cleanUp(io: StepIo, bmc: RedfishBmc): Promise<void> {
  const media = await bmc.cdMedia();
  const iso = media.image ? parseIsoUrl(media.image) : undefined;
  if (media.inserted && iso?.serverId === io.spec.id) {
    io.progress('ejecting the installer');
    await bmc.ejectMedia();
  }
  // The ISO server's certificate goes; VerifyCertificate goes back to what it was when this activity changed it.
  const pem = await isoServerCertificatePem();
  const trust = io.marks[MARK_MEDIA_TRUST] as MediaTrustMark | undefined;
  if (pem) await bmc.untrustMediaCertificate(pem, trust?.verifyBefore ?? undefined);
  const sys = await bmc.system();
  if (overrideActive({ target: sys.boot.target ?? 'None', enabled: sys.boot.enabled ?? 'Disabled' }, 'Cd')) {
    await bmc.setBootOverride({ target: 'None', enabled: 'Disabled' });
  }
  const removed = await removeHostIsos(io.spec.id);
  if (removed) io.progress(`deleted ${removed} per-host ISO(s) of ${io.spec.id}`);
}

async function verify(io: StepIo): Promise<void> {
  const esxi = esxiOf(io.spec, 'hypervisor');
  const where = apiWhere(io.spec, esxi);
  const timeoutMs = esxi.installTimeoutSeconds * 1000;
  const cycle = io.marks[MARK_CYCLE] as CycleMark | null | undefined;
  // Without a power cycle in this activity the host answered already: one short look is enough.
  const deadline = cycle ? cycle.at + timeoutMs : Date.now() + Math.min(timeoutMs, 60_000);
  const intervalMs = Math.min(15_000, Math.max(1_000, Math.round(timeoutMs / 200)));
  const rounds = Math.ceil(timeoutMs / intervalMs) + 2;
  let api: ApiView | undefined;
  let up = false;
  for (let round = 0; round < rounds; round++) {
    api = await probe(io.spec, esxi);
    if (api.state === 'answers' && !isExpected(api, esxi)) {
      // The install finished with another product or version than the spec's: waiting will not change it.
      throw new VerificationError(`the installed host answers, but not as the ESXi the spec expects`, {
        host: io.spec.id,
        step: 'hypervisor',
        field: 'hypervisor.installer.version',
        expected: expected(esxi),
        observed: api.detail,
      });
    }
    up = api.state === 'answers';
    if (!up && cycle && !io.marks[MARK_DOWN]) io.mark(MARK_DOWN, Date.now());
    if (up && (!cycle || io.marks[MARK_DOWN])) break;
    if (Date.now() + intervalMs > deadline) break;
    // 'untrusted' while waiting is the installer's or the first boot's own certificate, before %firstboot
    // replaced it: keep waiting, and say so at the deadline.
    io.progress(`waiting for ESXi on ${where}: ${api.state} (${Math.round((deadline - Date.now()) / 1000)} s left)`);
    await io.sleep(intervalMs);
  }
  if (!up || (cycle && !io.marks[MARK_DOWN])) {
    const why = up ? 'it answered throughout: the power cycle never took it down' : `${api?.state ?? 'no answer'}: ${api?.detail ?? ''}`;
    throw new VerificationError(`ESXi did not come up within ${esxi.installTimeoutSeconds} s of the power cycle`, {
      host: io.spec.id,
      step: 'hypervisor',
      field: 'esxi',
      expected: `${expected(esxi)} answering on ${where} with the pinned certificate`,
      observed: why,
    });
  }

  await withBmc(io, 'hypervisor', async (bmc) => {
    // A running ESXi means a powered system; a BMC may report the state change a little after the fact.
    await bmc.waitPowerState('On', POWER_WAIT);
    await cleanUp(io, bmc);
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
    const mediaDiffers = pre.media.image !== now.media.image || pre.media.inserted !== now.media.inserted;
    if (mediaDiffers) {
      if (now.media.inserted) await bmc.ejectMedia();
      // An earlier per-host ISO (masked, its token gone) cannot be put back; anything else can.
      if (pre.media.inserted && pre.media.image && !parseIsoUrl(pre.media.image) && !pre.media.image.includes('/iso/***/')) {
        await bmc.insertMedia(pre.media.image);
      }
    }
    const pem = await isoServerCertificatePem();
    if (pem) await bmc.untrustMediaCertificate(pem, pre.media.verifyCertificate ?? undefined);
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
    await removeHostIsos(io.spec.id);
  });
}

/** What the step owns on the BMC; `api` is the host's, not the step's. */
function diff(a: EsxiInstallState, b: EsxiInstallState): Change[] {
  const own = (s: EsxiInstallState) => ({
    power: s.power,
    bootOverride: s.bootOverride,
    media: { image: s.media.image, inserted: s.media.inserted, verifyCertificate: s.media.verifyCertificate },
  });
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
