/**
 * A vSphere Web Services session: RetrieveServiceContent, Login (credentials by reference), the PropertyCollector
 * (RetrievePropertiesEx through a ContainerView, paged, bounded), task waiting (bounded polling), Logout.
 *
 * Everything that reaches XML passes through `xml`/`el` (src/transports/soap.ts); everything that comes back is
 * validated with the zod schemas in ./schema before use.
 */
import { z } from 'zod';
import { AuthenticationError, NotConvergedError, UnexpectedOutputError } from '../../common/errors';
import { SoapClient, SoapFaultError, XmlFragment, el, xml, type HttpCredentialRefSpec, type SoapClientOptions } from '../../transports/soap';
import {
  ObjectContentSchema,
  ServiceContentSchema,
  TaskInfoSchema,
  RetrieveResultSchema,
  morSchema,
  many,
  parseWith,
  type Mor,
  type ObjectContent,
  type TaskInfo,
} from './schema';

/** The vim25 namespace every request uses; 6.5 covers every call made here and is accepted by vCenter 6.5 – 8. */
export const VIM_VERSION = '6.5';

export interface VcenterTarget {
  address: string;
  port: number;
  credentials: HttpCredentialRefSpec;
  /** PEM bundle that is the only trust anchor (required: the system store is never consulted). */
  caFile: string;
  /** Server id (the host being onboarded), for error messages. */
  label: string;
}

export interface WaitOptions {
  /** Cancellation-aware sleep (an activity's io.sleep keeps heartbeating). */
  sleep: (ms: number) => Promise<void>;
  /** Default 120000. */
  timeoutMs?: number;
  /** First poll interval; doubles up to 2000 ms. Default 200. */
  intervalMs?: number;
  progress?: (note: string) => void;
}

const MAX_PAGES = 1000;

/** `<name type="T">value</name>`: a managed object reference as an argument. */
export function morEl(name: string, ref: Mor): XmlFragment {
  return el(name, ref.value, { type: ref.type });
}

export class VsphereClient {
  private constructor(
    readonly soap: SoapClient,
    readonly content: {
      rootFolder: Mor;
      propertyCollector: Mor;
      viewManager: Mor;
      sessionManager: Mor;
      setting?: Mor;
      apiVersion: string;
      fullName: string;
    },
    readonly label: string,
  ) {}

  /** Opens the HTTPS client, reads the service content and logs in. */
  static async connect(target: VcenterTarget, opts: SoapClientOptions = {}): Promise<VsphereClient> {
    const soap = await SoapClient.open(
      {
        host: target.address,
        port: target.port,
        path: '/sdk',
        caFile: target.caFile,
        credentials: target.credentials,
        soapAction: `urn:vim25/${VIM_VERSION}`,
        label: target.label,
      },
      opts,
    );
    try {
      const si = { type: 'ServiceInstance', value: 'ServiceInstance' };
      const res = await soap.call('RetrieveServiceContent', xml`<RetrieveServiceContent xmlns="urn:vim25">${morEl('_this', si)}</RetrieveServiceContent>`);
      const sc = parseWith(ServiceContentSchema, res.returnval, 'RetrieveServiceContent', target.label);
      await soap.login(
        'Login',
        (user, password) => xml`<Login xmlns="urn:vim25">${morEl('_this', sc.sessionManager)}${el('userName', user)}${el('password', password)}</Login>`,
      );
      return new VsphereClient(
        soap,
        {
          rootFolder: sc.rootFolder,
          propertyCollector: sc.propertyCollector,
          viewManager: sc.viewManager,
          sessionManager: sc.sessionManager,
          ...(sc.setting ? { setting: sc.setting } : {}),
          apiVersion: sc.about.apiVersion,
          fullName: sc.about.fullName,
        },
        target.label,
      );
    } catch (err) {
      soap.close();
      throw err;
    }
  }

  /** Calls `method` on `self` with `args` (already-built argument elements, in WSDL order). */
  invoke(method: string, self: Mor, args: XmlFragment | XmlFragment[] = []): Promise<Record<string, unknown>> {
    return this.soap.call(method, xml`<${xmlName(method)} xmlns="urn:vim25">${morEl('_this', self)}${args}</${xmlName(method)}>`);
  }

  /** Properties of the given objects. */
  async retrieve(objects: Mor[], type: string, paths: string[]): Promise<ObjectContent[]> {
    if (!objects.length) return [];
    const spec = xml`<specSet><propSet>${el('type', type)}${paths.map((p) => el('pathSet', p))}</propSet>${objects.map((o) => xml`<objectSet>${morEl('obj', o)}<skip>false</skip></objectSet>`)}</specSet>`;
    return this.#retrieveAll(spec);
  }

  /** The properties of one object (throws when vCenter does not return it: it no longer exists). */
  async properties(obj: Mor, paths: string[]): Promise<ObjectContent> {
    const [oc] = await this.retrieve([obj], obj.type, paths);
    if (!oc)
      throw new UnexpectedOutputError(`${obj.type} ${obj.value} was not returned by the PropertyCollector`, {
        host: this.label,
        command: 'RetrievePropertiesEx',
        observed: 'no object',
      });
    return oc;
  }

  /** Every object of `type` in the inventory (a recursive ContainerView on the root folder), with `paths`. */
  async findAll(type: string, paths: string[]): Promise<ObjectContent[]> {
    const res = await this.invoke('CreateContainerView', this.content.viewManager, [
      morEl('container', this.content.rootFolder),
      el('type', type),
      el('recursive', true),
    ]);
    const view = parseWith(morSchema, res.returnval, 'CreateContainerView', this.label);
    try {
      const spec = xml`<specSet><propSet>${el('type', type)}${paths.map((p) => el('pathSet', p))}</propSet><objectSet>${morEl('obj', view)}<skip>true</skip><selectSet xsi:type="TraversalSpec"><name>view</name><type>ContainerView</type><path>view</path><skip>false</skip></selectSet></objectSet></specSet>`;
      return await this.#retrieveAll(spec);
    } finally {
      await this.invoke('DestroyView', view).catch(() => undefined);
    }
  }

  async #retrieveAll(specSet: XmlFragment): Promise<ObjectContent[]> {
    const out: ObjectContent[] = [];
    let res = await this.invoke('RetrievePropertiesEx', this.content.propertyCollector, [specSet, xml`<options></options>`]);
    for (let page = 0; page < MAX_PAGES; page++) {
      if (res.returnval === undefined || res.returnval === '') return out; // nothing matched
      const r = parseWith(RetrieveResultSchema, res.returnval, 'RetrievePropertiesEx', this.label);
      for (const o of r.objects) {
        const oc = parseWith(ObjectContentSchema, o, 'RetrievePropertiesEx', this.label);
        // A property vCenter withholds (no permission, session gone) comes back in missingSet, not as a fault.
        const [path, fault] = Object.entries(oc.missing)[0] ?? [];
        if (path) {
          const ctx = { host: this.label, command: 'RetrievePropertiesEx', field: `${oc.obj.type} ${oc.obj.value} ${path}`, observed: fault };
          if (fault === 'NotAuthenticated' || fault === 'NoPermission')
            throw new AuthenticationError(`vCenter withheld ${path} of ${oc.obj.value} (${fault})`, ctx);
          throw new UnexpectedOutputError(`vCenter could not return ${path} of ${oc.obj.value} (${fault})`, ctx);
        }
        out.push(oc);
      }
      if (!r.token) return out;
      res = await this.invoke('ContinueRetrievePropertiesEx', this.content.propertyCollector, [el('token', r.token)]);
    }
    throw new UnexpectedOutputError(`RetrievePropertiesEx returned more than ${MAX_PAGES} pages`, {
      host: this.label,
      command: 'ContinueRetrievePropertiesEx',
    });
  }

  /**
   * One advanced setting of the service (vCenter: Administration → Advanced Settings), by its exact key: its value
   * as text, or undefined when the service does not have it (then its built-in default applies).
   */
  async option(key: string): Promise<string | undefined> {
    if (!this.content.setting) return undefined;
    let res: Record<string, unknown>;
    try {
      res = await this.invoke('QueryOptions', this.content.setting, [el('name', key)]);
    } catch (e) {
      // InvalidName: no such setting (vCenter only lists settings that were set, or have a registered default).
      if (e instanceof SoapFaultError && e.fault === 'InvalidName') return undefined;
      throw e;
    }
    const values = parseWith(many(OptionValueSchema), res.returnval, `QueryOptions ${key}`, this.label);
    const hit = values.find((v) => v.key === key);
    return hit?.value;
  }

  /** Runs a `*_Task` method and waits for its outcome; a task error is thrown as SoapFaultError. */
  async runTask(method: string, self: Mor, args: XmlFragment | XmlFragment[], wait: WaitOptions): Promise<TaskInfo> {
    const res = await this.invoke(method, self, args);
    const task = parseWith(morSchema, res.returnval, method, this.label);
    return this.waitForTask(task, method, wait);
  }

  /** Polls the task's info until success or error, bounded in time and rounds. */
  async waitForTask(task: Mor, what: string, wait: WaitOptions): Promise<TaskInfo> {
    const timeoutMs = wait.timeoutMs ?? 120_000;
    const deadline = Date.now() + timeoutMs;
    let interval = wait.intervalMs ?? 200;
    const maxRounds = Math.ceil(timeoutMs / interval) + 2;
    let info: TaskInfo | undefined;
    for (let round = 0; round < maxRounds; round++) {
      const oc = await this.properties(task, ['info']);
      info = parseWith(TaskInfoSchema, oc.props.info, `${what} task info`, this.label);
      if (info.state === 'success') return info;
      if (info.state === 'error') {
        const fault = info.error?.fault ?? 'UnknownFault';
        const msg = info.error?.localizedMessage;
        throw new SoapFaultError(
          `${what} failed: ${fault}${msg ? ` (${msg})` : ''}`,
          { host: this.label, command: what, observed: fault },
          fault,
          RETRYABLE_TASK_FAULTS.has(fault),
          info.error?.detail ?? {},
        );
      }
      if (Date.now() + interval > deadline) break;
      wait.progress?.(`${what}: task ${task.value} ${info.state}${info.progress !== undefined ? ` ${info.progress}%` : ''}`);
      await wait.sleep(interval);
      interval = Math.min(interval * 2, 2_000);
    }
    throw new NotConvergedError(`${what}: task ${task.value} still ${info?.state ?? 'unknown'} after ${timeoutMs} ms`, {
      host: this.label,
      command: what,
      observed: info?.state,
    });
  }

  /** Logs out (bounded, best effort) and closes the connections. */
  async close(): Promise<void> {
    if (this.soap.hasSession) {
      await this.soap
        .call('Logout', xml`<Logout xmlns="urn:vim25">${morEl('_this', this.content.sessionManager)}</Logout>`, { timeoutMs: 5_000 })
        .catch(() => undefined);
    }
    this.soap.close();
  }
}

/** An OptionValue: its key and its value as text (`<value xsi:type="xsd:boolean">true</value>`). */
const OptionValueSchema = z.looseObject({ key: z.string(), value: z.unknown() }).transform((o) => {
  const v = o.value;
  const text = typeof v === 'object' && v !== null && '#text' in v ? (v as Record<string, unknown>)['#text'] : v;
  return { key: o.key, value: typeof text === 'string' || typeof text === 'number' || typeof text === 'boolean' ? String(text) : undefined };
});

/** Task faults that say "not now". */
const RETRYABLE_TASK_FAULTS = new Set(['ConcurrentAccess', 'TaskInProgress', 'HostCommunication', 'HostNotConnected', 'Timedout', 'SystemError']);

/** A method name is program text; refuse anything that is not a plain XML name. */
function xmlName(name: string): XmlFragment {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new TypeError(`not a vSphere method name: ${JSON.stringify(name)}`);
  return new XmlFragment(name);
}
