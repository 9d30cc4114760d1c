/**
 * A server's BMC over Redfish: discover the ComputerSystem, read its inventory, power it, set a one-time boot
 * override, and insert / eject virtual media — each answer validated (schemas.ts), each loop bounded.
 *
 * Authentication: a Redfish session when the service root advertises one (Links.Sessions), else HTTP basic.
 * Writes use the resource's ETag as If-Match when it has one; a 412 (someone changed it meanwhile) is retried once
 * with a fresh ETag. Actions answered 202 are followed through their task monitor, honouring Retry-After.
 */
import type { z } from 'zod';
import type { StepName } from '../../steps';
import { CommandFailedError, InvalidSpecError, UnderlayError, UnexpectedOutputError, UnsupportedHardwareError, type ErrorContext } from '../../common/errors';
import type { HypervisorSpec } from '../../spec/server';
import { HttpClient, HttpStatusError, type HttpClientOptions, type HttpResponse, type RequestLogEntry } from '../../transports/http';
import {
  ActionInfo,
  Certificate,
  Collection,
  ComputerSystem,
  EthernetInterface,
  Manager,
  ServiceRoot,
  Task,
  VirtualMedia,
  parseResource,
  type ComputerSystemT,
  type VirtualMediaT,
} from './schemas';

export type BmcSpec = Extract<HypervisorSpec, { kind: 'esxi' }>['bmc'];

export interface RedfishOptions extends HttpClientOptions {
  /** Cancellation-aware, heartbeating sleep (an activity passes io.sleep). Default setTimeout. */
  sleep?: (ms: number) => Promise<void>;
  /** Names the step in errors. */
  step?: StepName;
  /** Bound for following one task monitor. Default 10 min. */
  taskTimeoutMs?: number;
}

export interface SystemState {
  path: string;
  id: string;
  powerState: string;
  boot: { target?: string; enabled?: string; mode?: string; allowedTargets?: string[] };
  /** The ResetType values the BMC allows (from AllowableValues or ActionInfo); undefined when it does not say. */
  resetTypes?: string[];
}

export interface NicInventory {
  id: string;
  /** Lowercase colon form; the permanent MAC when the BMC reports one. */
  mac?: string;
  linkStatus?: string;
  speedMbps?: number;
}

export interface MediaState {
  path: string;
  id: string;
  image?: string;
  inserted: boolean;
  /** VerifyCertificate, when the BMC has it: whether it checks the image server's certificate. */
  verifyCertificate?: boolean;
  /** The device's Certificates collection (the image servers' certificates it trusts), when it has one. */
  certificatesPath?: string;
}

export interface BootOverride {
  target: string;
  enabled: 'Once' | 'Continuous' | 'Disabled';
}

const SERVICE_ROOT = '/redfish/v1/';
const MAX_MEMBERS = 64;
const DEFAULT_TASK_TIMEOUT_MS = 10 * 60_000;

export class RedfishBmc {
  readonly #http: HttpClient;
  readonly #label: string;
  readonly #systemId: string | undefined;
  readonly #sleep: (ms: number) => Promise<void>;
  readonly #step: StepName | undefined;
  readonly #taskTimeoutMs: number;
  #systemPath: string | undefined;
  #resetTypes: { for: string; values: string[] | undefined } | undefined;

  private constructor(http: HttpClient, label: string, systemId: string | undefined, opts: RedfishOptions) {
    this.#http = http;
    this.#label = label;
    this.#systemId = systemId;
    this.#sleep = opts.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms)));
    this.#step = opts.step;
    this.#taskTimeoutMs = opts.taskTimeoutMs ?? DEFAULT_TASK_TIMEOUT_MS;
  }

  /** Opens the BMC: pinned TLS, then a session when the service offers one (basic auth otherwise). */
  static async connect(bmc: BmcSpec, label: string, opts: RedfishOptions = {}): Promise<RedfishBmc> {
    const http = await HttpClient.open({ host: bmc.address, port: bmc.port, tls: bmc.tls, credentials: bmc.credentials, label }, opts);
    try {
      const self = new RedfishBmc(http, label, bmc.systemId, opts);
      // The service root is readable without credentials (DSP0266); it says whether sessions exist.
      const root = parseResource(ServiceRoot, (await http.get(SERVICE_ROOT, { authenticate: false })).body, 'the service root', self.#ctx());
      const sessions = root.Links?.Sessions?.['@odata.id'];
      if (sessions) {
        try {
          await http.login(sessions);
        } catch (e) {
          // Advertised but not working (404/405/501): basic auth still works on most BMCs. Bad credentials do not.
          if (!(e instanceof HttpStatusError) || e.retryable) throw e;
        }
      }
      self.#rootSystems = root.Systems['@odata.id'];
      return self;
    } catch (e) {
      await http.close();
      throw e;
    }
  }

  #rootSystems = '/redfish/v1/Systems';

  get usesSession(): boolean {
    return this.#http.usesSession;
  }

  /** Every request so far: method, path, status. */
  get requestLog(): readonly RequestLogEntry[] {
    return this.#http.log;
  }

  close(): Promise<void> {
    return this.#http.close();
  }

  #ctx(extra: ErrorContext = {}): ErrorContext {
    return { host: this.#label, ...(this.#step ? { step: this.#step } : {}), ...extra };
  }

  async #get<S extends z.ZodType>(schema: S, path: string, what: string): Promise<{ value: z.output<S>; res: HttpResponse }> {
    const res = await this.#http.get(path);
    return { value: parseResource(schema, res.body, what, this.#ctx({ command: `GET ${path}` })), res };
  }

  async #members(path: string, what: string): Promise<string[]> {
    const { value } = await this.#get(Collection, path, what);
    const members = value.Members.map((m) => m['@odata.id']);
    if (members.length > MAX_MEMBERS) {
      throw new UnexpectedOutputError(
        `${what} has more members than underlay reads`,
        this.#ctx({ command: `GET ${path}`, expected: `≤ ${MAX_MEMBERS}`, observed: members.length }),
      );
    }
    return members;
  }

  /** The ComputerSystem: the spec's `bmc.systemId`, or the only one. */
  async systemPath(): Promise<string> {
    if (this.#systemPath) return this.#systemPath;
    const members = await this.#members(this.#rootSystems, 'the Systems collection');
    const want = this.#systemId;
    let path: string | undefined;
    if (want) {
      path = members.find((m) => m.replace(/\/$/, '').split('/').pop() === want);
      if (!path) {
        for (const m of members) {
          const { value } = await this.#get(ComputerSystem, m, `system ${m}`);
          if (value.Id === want) path = m;
        }
      }
      if (!path) {
        throw new InvalidSpecError(
          'the BMC has no such system',
          [],
          this.#ctx({ field: 'hypervisor.bmc.systemId', expected: want, observed: members.map(lastSegment).join(', ') || 'none' }),
        );
      }
    } else if (members.length === 1) {
      path = members[0]!;
    } else {
      throw new InvalidSpecError(
        members.length ? 'the BMC manages several systems: name one' : 'the BMC lists no system',
        [],
        this.#ctx({ field: 'hypervisor.bmc.systemId', expected: 'one of the BMC’s systems', observed: members.map(lastSegment).join(', ') || 'none' }),
      );
    }
    this.#systemPath = path;
    return path;
  }

  async #readSystem(): Promise<{ system: ComputerSystemT; etag?: string }> {
    const path = await this.systemPath();
    const { value, res } = await this.#get(ComputerSystem, path, 'the ComputerSystem');
    return { system: value, etag: res.etag };
  }

  async system(): Promise<SystemState> {
    const { system } = await this.#readSystem();
    const b = system.Boot;
    return {
      path: system['@odata.id'],
      id: system.Id,
      powerState: system.PowerState ?? 'Unknown',
      boot: {
        target: b?.BootSourceOverrideTarget,
        enabled: b?.BootSourceOverrideEnabled,
        mode: b?.BootSourceOverrideMode,
        allowedTargets: b?.['BootSourceOverrideTarget@Redfish.AllowableValues'],
      },
      resetTypes: await this.#allowedResetTypes(system),
    };
  }

  async #allowedResetTypes(system: ComputerSystemT): Promise<string[] | undefined> {
    const action = system.Actions['#ComputerSystem.Reset'];
    if (action['ResetType@Redfish.AllowableValues']) return action['ResetType@Redfish.AllowableValues'];
    const info = action['@Redfish.ActionInfo'];
    if (!info) return undefined;
    if (this.#resetTypes?.for === info) return this.#resetTypes.values;
    const { value } = await this.#get(ActionInfo, info, 'the Reset ActionInfo');
    const values = value.Parameters.find((p) => p.Name === 'ResetType')?.AllowableValues;
    this.#resetTypes = { for: info, values };
    return values;
  }

  /** The system's NICs as the BMC reports them (MACs; link state and speed where the BMC has them). */
  async ethernetInterfaces(): Promise<NicInventory[]> {
    const { system } = await this.#readSystem();
    const coll = system.EthernetInterfaces?.['@odata.id'];
    if (!coll) throw new UnsupportedHardwareError('the BMC reports no EthernetInterfaces for the system', this.#ctx({ field: 'EthernetInterfaces' }));
    const nics: NicInventory[] = [];
    for (const m of await this.#members(coll, 'the EthernetInterfaces collection')) {
      const { value } = await this.#get(EthernetInterface, m, `EthernetInterface ${lastSegment(m)}`);
      const mac = normaliseMac(value.PermanentMACAddress) ?? normaliseMac(value.MACAddress);
      nics.push({ id: value.Id, mac, linkStatus: value.LinkStatus, speedMbps: value.SpeedMbps });
    }
    return nics;
  }

  /** POSTs ComputerSystem.Reset with `resetType` (which must be one the BMC allows, when it says). */
  async reset(resetType: string): Promise<void> {
    const { system } = await this.#readSystem();
    const allowed = await this.#allowedResetTypes(system);
    if (allowed && !allowed.includes(resetType)) {
      throw new UnsupportedHardwareError(
        'the BMC does not allow this ResetType',
        this.#ctx({ field: 'ResetType', expected: resetType, observed: allowed.join(', ') }),
      );
    }
    const target = system.Actions['#ComputerSystem.Reset'].target;
    await this.#completeAction(await this.#http.request('POST', target, { body: { ResetType: resetType } }), `Reset ${resetType}`);
  }

  /** Polls PowerState until it is `want` (bounded). */
  async waitPowerState(want: 'On' | 'Off', opts: { timeoutMs: number; intervalMs: number }): Promise<void> {
    const deadline = Date.now() + opts.timeoutMs;
    const rounds = Math.ceil(opts.timeoutMs / opts.intervalMs) + 1;
    let seen = 'Unknown';
    for (let i = 0; i < rounds; i++) {
      seen = (await this.#readSystem()).system.PowerState ?? 'Unknown';
      if (seen === want) return;
      if (Date.now() + opts.intervalMs > deadline) break;
      await this.#sleep(opts.intervalMs);
    }
    throw new CommandFailedError(
      `the system did not reach PowerState ${want} within ${Math.round(opts.timeoutMs / 1000)} s`,
      this.#ctx({ field: 'PowerState', expected: want, observed: seen }),
    );
  }

  /** PATCHes the boot override (If-Match with the system's ETag; one retry on 412 with a fresh one). */
  async setBootOverride(o: BootOverride): Promise<void> {
    for (let attempt = 1; attempt <= 2; attempt++) {
      const { system, etag } = await this.#readSystem();
      const allowed = system.Boot?.['BootSourceOverrideTarget@Redfish.AllowableValues'];
      if (allowed && o.target !== 'None' && !allowed.includes(o.target)) {
        throw new UnsupportedHardwareError(
          'the BMC does not allow this boot override target',
          this.#ctx({ field: 'Boot.BootSourceOverrideTarget', expected: o.target, observed: allowed.join(', ') }),
        );
      }
      try {
        const res = await this.#http.request('PATCH', system['@odata.id'], {
          body: { Boot: { BootSourceOverrideTarget: o.target, BootSourceOverrideEnabled: o.enabled } },
          ifMatch: etag,
        });
        await this.#completeAction(res, 'boot override');
        return;
      } catch (e) {
        if (!(e instanceof HttpStatusError && e.status === 412 && attempt === 1)) throw e;
      }
    }
  }

  /** The system's CD/DVD virtual media device: System.VirtualMedia, else the managing BMC's (Links.ManagedBy). */
  async cdMedia(): Promise<MediaState & { insertTarget?: string; ejectTarget?: string }> {
    const { system } = await this.#readSystem();
    const collections: string[] = [];
    if (system.VirtualMedia) collections.push(system.VirtualMedia['@odata.id']);
    else {
      for (const m of (system.Links?.ManagedBy ?? []).slice(0, 4)) {
        const { value } = await this.#get(Manager, m['@odata.id'], `manager ${lastSegment(m['@odata.id'])}`);
        if (value.VirtualMedia) collections.push(value.VirtualMedia['@odata.id']);
      }
    }
    const seen: string[] = [];
    for (const coll of collections) {
      for (const m of await this.#members(coll, 'the VirtualMedia collection')) {
        const { value } = await this.#get(VirtualMedia, m, `VirtualMedia ${lastSegment(m)}`);
        seen.push(`${value.Id} (${value.MediaTypes.join('/') || '?'})`);
        if (value.MediaTypes.some((t) => t === 'CD' || t === 'DVD') || (!value.MediaTypes.length && /^cd|dvd/i.test(value.Id))) return media(value);
      }
    }
    throw new UnsupportedHardwareError(
      'the BMC offers no CD/DVD virtual media for the system',
      this.#ctx({ field: 'VirtualMedia', expected: 'a device with MediaTypes CD or DVD', observed: seen.join(', ') || 'no VirtualMedia' }),
    );
  }

  /**
   * InsertMedia (read-only); falls back to PATCHing the resource when the action is absent or refused.
   * `secret`: a part of the image URL that must not leave (an access token in the path): a BMC error that quotes
   * the URL ("cannot download https://…") is passed on with it masked.
   */
  async insertMedia(image: string, secret?: string): Promise<void> {
    const dev = await this.cdMedia();
    const body = { Image: image, Inserted: true, WriteProtected: true };
    try {
      await this.#actionOrPatch(dev.path, dev.insertTarget, body, body, 'InsertMedia');
    } catch (e) {
      if (secret) maskSecret(e, secret);
      throw e;
    }
  }

  /**
   * Makes the CD device trust exactly this image-server certificate: adds it to the device's `Certificates` when it
   * is not there, then sets `VerifyCertificate: true`. 'unsupported' when the BMC has neither (it then downloads
   * without checking the server — the Redfish default).
   */
  async trustMediaCertificate(pem: string): Promise<'pinned' | 'unsupported'> {
    const dev = await this.cdMedia();
    if (!dev.certificatesPath || dev.verifyCertificate === undefined) return 'unsupported';
    if (!(await this.#mediaCertificates(dev.certificatesPath)).some((c) => samePem(c.pem, pem))) {
      const res = await this.#http.request('POST', dev.certificatesPath, { body: { CertificateString: pem, CertificateType: 'PEM' } });
      await this.#completeAction(res, 'add the image server certificate');
    }
    if (dev.verifyCertificate !== true) await this.#patchMedia(dev.path, { VerifyCertificate: true }, 'VerifyCertificate');
    return 'pinned';
  }

  /** Removes this certificate from the CD device's trusted ones, and puts VerifyCertificate back to `verify`. */
  async untrustMediaCertificate(pem: string, verify: boolean | undefined): Promise<void> {
    const dev = await this.cdMedia();
    if (!dev.certificatesPath) return;
    for (const c of await this.#mediaCertificates(dev.certificatesPath)) {
      if (samePem(c.pem, pem)) await this.#http.request('DELETE', c.path);
    }
    if (verify !== undefined && dev.verifyCertificate !== undefined && dev.verifyCertificate !== verify) {
      await this.#patchMedia(dev.path, { VerifyCertificate: verify }, 'VerifyCertificate');
    }
  }

  async #mediaCertificates(collection: string): Promise<Array<{ path: string; pem: string }>> {
    const out: Array<{ path: string; pem: string }> = [];
    for (const m of await this.#members(collection, 'the media certificates')) {
      const { value } = await this.#get(Certificate, m, `certificate ${lastSegment(m)}`);
      if (value.CertificateString) out.push({ path: m, pem: value.CertificateString });
    }
    return out;
  }

  async #patchMedia(resource: string, body: unknown, what: string): Promise<void> {
    for (let attempt = 1; attempt <= 2; attempt++) {
      const etag = (await this.#http.get(resource)).etag;
      try {
        await this.#completeAction(await this.#http.request('PATCH', resource, { body, ifMatch: etag }), what);
        return;
      } catch (e) {
        if (!(e instanceof HttpStatusError && e.status === 412 && attempt === 1)) throw e;
      }
    }
  }

  /** EjectMedia; falls back to PATCH {Image: null, Inserted: false}. */
  async ejectMedia(): Promise<void> {
    const dev = await this.cdMedia();
    await this.#actionOrPatch(dev.path, dev.ejectTarget, {}, { Image: null, Inserted: false }, 'EjectMedia');
  }

  async #actionOrPatch(resource: string, target: string | undefined, actionBody: unknown, patchBody: unknown, what: string): Promise<void> {
    if (target) {
      try {
        await this.#completeAction(await this.#http.request('POST', target, { body: actionBody }), what);
        return;
      } catch (e) {
        // Action missing or refused as unsupported: the PATCH form is the older (and some vendors' only) way.
        if (!(e instanceof HttpStatusError && [400, 404, 405, 501].includes(e.status))) throw e;
      }
    }
    for (let attempt = 1; attempt <= 2; attempt++) {
      const etag = (await this.#http.get(resource)).etag;
      try {
        await this.#completeAction(await this.#http.request('PATCH', resource, { body: patchBody, ifMatch: etag }), `${what} (PATCH)`);
        return;
      } catch (e) {
        if (!(e instanceof HttpStatusError && e.status === 412 && attempt === 1)) throw e;
      }
    }
  }

  /** A 202 Accepted names a task monitor: poll it (Retry-After honoured, bounded) until the task is done. */
  async #completeAction(res: HttpResponse, what: string): Promise<void> {
    if (res.status !== 202) return;
    const monitor = res.location;
    if (!monitor) return; // accepted without a monitor: the caller re-reads the state it changed
    const deadline = Date.now() + this.#taskTimeoutMs;
    let wait = res.retryAfterMs;
    for (let round = 0; round < 600; round++) {
      await this.#sleep(clamp(wait ?? 2_000, 500, 30_000));
      let r: HttpResponse;
      try {
        r = await this.#http.get(monitor);
      } catch (e) {
        // A monitor may vanish once its task is done and reported.
        if (e instanceof HttpStatusError && e.status === 404 && round > 0) return;
        throw e;
      }
      if (r.status !== 202) {
        const task = Task.safeParse(r.body);
        const state = task.success ? task.data.TaskState : undefined;
        if (state && ['Exception', 'Killed', 'Cancelled', 'Interrupted'].includes(state)) {
          const msg = task.success
            ? (task.data.Messages ?? [])
                .map((m) => m.Message ?? m.MessageId)
                .filter(Boolean)
                .join(' | ')
            : '';
          throw new CommandFailedError(`${what}: the BMC task ended ${state}${msg ? `: ${msg}` : ''}`, this.#ctx({ command: what, observed: state }), false);
        }
        return;
      }
      if (Date.now() >= deadline) break;
      wait = r.retryAfterMs;
    }
    throw new CommandFailedError(
      `${what}: the BMC task did not finish within ${Math.round(this.#taskTimeoutMs / 1000)} s`,
      this.#ctx({ command: `GET ${monitor}` }),
    );
  }
}

function media(v: VirtualMediaT): MediaState & { insertTarget?: string; ejectTarget?: string } {
  const image = v.Image || undefined;
  return {
    path: v['@odata.id'],
    id: v.Id,
    image,
    // Some BMCs omit Inserted: an image present means inserted.
    inserted: v.Inserted ?? image !== undefined,
    ...(v.VerifyCertificate !== undefined ? { verifyCertificate: v.VerifyCertificate } : {}),
    ...(v.Certificates ? { certificatesPath: v.Certificates['@odata.id'] } : {}),
    insertTarget: v.Actions?.['#VirtualMedia.InsertMedia']?.target,
    ejectTarget: v.Actions?.['#VirtualMedia.EjectMedia']?.target,
  };
}

/**
 * The ResetTypes to POST, in order, to get the system into `want` from `power`: `cycle` restarts a running
 * system (ForceRestart, else PowerCycle, else ForceOff then On) and starts a stopped one.
 */
export function resetSequence(want: 'on' | 'off' | 'cycle', power: string, allowed: string[] | undefined): string[] {
  const can = (t: string) => !allowed || allowed.includes(t);
  const first = (ts: string[]) => ts.find(can);
  const on = first(['On', 'ForceOn', 'PushPowerButton']);
  const off = first(['ForceOff', 'GracefulShutdown', 'PushPowerButton']);
  const running = power === 'On' || power === 'PoweringOn';
  const seq = (() => {
    if (want === 'on') return running ? [] : on ? [on] : undefined;
    if (want === 'off') return running ? (off ? [off] : undefined) : [];
    if (!running) return on ? [on] : undefined;
    const restart = first(['ForceRestart', 'PowerCycle']);
    if (restart) return [restart];
    return off && on ? [off, on] : undefined;
  })();
  if (!seq) {
    throw new UnsupportedHardwareError(`the BMC allows no ResetType that can ${want === 'cycle' ? 'power-cycle' : `power ${want}`} the system`, {
      field: 'ResetType@Redfish.AllowableValues',
      expected:
        want === 'cycle'
          ? 'ForceRestart, PowerCycle, or ForceOff and On'
          : want === 'on'
            ? 'On, ForceOn or PushPowerButton'
            : 'ForceOff, GracefulShutdown or PushPowerButton',
      observed: (allowed ?? []).join(', '),
    });
  }
  return seq;
}

function samePem(a: string, b: string): boolean {
  const norm = (s: string) => s.replace(/\s+/g, '');
  return norm(a) === norm(b);
}

/** Masks `secret` wherever an error could carry it: its message, stack, context and a quoted BMC answer. */
function maskSecret(e: unknown, secret: string): void {
  if (!(e instanceof Error) || secret.length < 8) return;
  const mask = (s: string) => s.split(secret).join('***');
  e.message = mask(e.message);
  if (e.stack) e.stack = mask(e.stack);
  if (e instanceof UnderlayError) {
    const ctx = e.context as Record<string, unknown>;
    for (const [k, v] of Object.entries(ctx)) if (typeof v === 'string') ctx[k] = mask(v);
  }
  const withExcerpt = e as { excerpt?: unknown };
  if (typeof withExcerpt.excerpt === 'string') Object.defineProperty(e, 'excerpt', { value: mask(withExcerpt.excerpt) });
}

export function normaliseMac(mac: string | undefined): string | undefined {
  if (!mac) return undefined;
  const hex = mac.toLowerCase().replace(/[^0-9a-f]/g, '');
  return hex.length === 12 ? hex.match(/../g)!.join(':') : undefined;
}

function lastSegment(path: string): string {
  return path.replace(/\/$/, '').split('/').pop() ?? path;
}

function clamp(v: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, v));
}
