/**
 * A real Redfish BMC for tests: sushy-tools' `sushy-emulator` (the OpenStack Redfish emulator, installed pinned by
 * scripts/install-sushy.sh, linked as .tools/sushy) with its FAKE systems driver, on 127.0.0.1 over TLS with a
 * self-signed certificate made here by `openssl req`, and HTTP basic auth (bcrypt htpasswd, as sushy wants).
 *
 * What the fake driver does (read from sushy_tools 2.2.0's source): systems, power (changes land 1–11 s after the
 * Reset, a *Restart goes Off at once and On when it lands), the boot override target (BootSourceOverrideEnabled is
 * always reported "Continuous"), virtual media Cd/Floppy (InsertMedia downloads the image URL), and
 * EthernetInterfaces (MACs only: no LinkStatus or speed). It sends no ETag, has no SessionService and no task
 * monitors. `startRedfishFront` adds exactly those protocol features in front of it — ETags with If-Match (412 on a
 * stale one), Redfish sessions, and 202 + task monitor for actions — while every state change stays sushy's own.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { X509Certificate, createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { createServer as createHttpsServer, request as httpsRequest, type Server as HttpsServer } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { certificateFingerprint } from '../../src/transports/http';
import { freePort } from './sshd';
import { credentialsSubdir } from './credentials';

const execFileP = promisify(execFile);
export const SUSHY_VENV = resolve(__dirname, '../../.tools/sushy');
export const SUSHY_BIN = join(SUSHY_VENV, 'bin/sushy-emulator');

export interface FakeSystem {
  uuid: string;
  name: string;
  power_state: 'On' | 'Off';
  nics: Array<{ mac: string }>;
}

export interface Sushy {
  port: number;
  dir: string;
  /** PEM of the self-signed certificate (also the CA file for `tls.caFile`). */
  certFile: string;
  keyFile: string;
  /** `sha256/<base64>` of the certificate: what a spec pins. */
  fingerprint: string;
  username: string;
  password: string;
  /** A credential file (two lines) for `{file}` references. */
  credentialFile: string;
  /** Spawn → first answered GET /redfish/v1/, in ms. */
  startMs: number;
  systems: FakeSystem[];
  /** Everything sushy printed. */
  log(): string;
  /** Requests from sushy's own access log, as "METHOD /path STATUS". */
  requests(filter?: RegExp): string[];
  stop(): Promise<void>;
}

export const DEFAULT_SYSTEM: FakeSystem = {
  uuid: '6a1e5b0c-2f44-4a6b-9b2c-1d7e0c3f5a01',
  name: 'esx01',
  power_state: 'Off',
  nics: [{ mac: '52:54:00:e5:00:01' }, { mac: '52:54:00:e5:00:02' }],
};

/** A self-signed EC certificate for 127.0.0.1 (SAN IP), by openssl (arguments passed as-is, no shell). */
export async function makeCertificate(dir: string, name = 'bmc'): Promise<{ certFile: string; keyFile: string; fingerprint: string }> {
  const certFile = join(dir, `${name}.crt`);
  const keyFile = join(dir, `${name}.key`);
  await execFileP('openssl', [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-days',
    '2',
    '-keyout',
    keyFile,
    '-out',
    certFile,
    '-subj',
    `/CN=underlay-test-${name}`,
    '-addext',
    'subjectAltName=IP:127.0.0.1',
  ]);
  const fingerprint = certificateFingerprint(new X509Certificate(await readFile(certFile)).raw);
  return { certFile, keyFile, fingerprint };
}

export async function startSushy(opts: { systems?: FakeSystem[]; readyTimeoutMs?: number } = {}): Promise<Sushy> {
  if (!existsSync(SUSHY_BIN)) throw new Error(`${SUSHY_BIN} is missing: run \`npm run setup\` (scripts/install-sushy.sh)`);
  const dir = await credentialsSubdir('sushy-'); // the credential file and certificate: inside the worker's scope
  const systems = opts.systems ?? [DEFAULT_SYSTEM];
  const username = 'underlay';
  const password = randomBytes(12).toString('base64url');
  const { certFile, keyFile, fingerprint } = await makeCertificate(dir);
  // bcrypt (the only digest sushy accepts) with the cheapest cost: sushy checks it on every request.
  const hash = await new Promise<string>((res, rej) => {
    const py = spawn(join(SUSHY_VENV, 'bin/python'), [
      '-c',
      'import bcrypt,sys; print(bcrypt.hashpw(sys.stdin.read().encode(), bcrypt.gensalt(rounds=4)).decode())',
    ]);
    let out = '';
    py.stdout.on('data', (c: Buffer) => (out += c.toString()));
    py.on('error', rej);
    py.on('close', (code) => (code === 0 ? res(out.trim()) : rej(new Error(`bcrypt helper exited ${code}`))));
    py.stdin.end(password);
  });
  const authFile = join(dir, 'htpasswd');
  await writeFile(authFile, `${username}:${hash}\n`, { mode: 0o600 });
  const credentialFile = join(dir, 'bmc-credentials');
  await writeFile(credentialFile, `${username}\n${password}\n`, { mode: 0o600 });
  await mkdir(join(dir, 'state'));
  await mkdir(join(dir, 'tmp'));

  let lastErr: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const conf = join(dir, 'emulator.conf');
    await writeFile(
      conf,
      [
        `SUSHY_EMULATOR_LISTEN_IP = '127.0.0.1'`,
        `SUSHY_EMULATOR_LISTEN_PORT = ${port}`,
        `SUSHY_EMULATOR_SSL_CERT = ${JSON.stringify(certFile)}`,
        `SUSHY_EMULATOR_SSL_KEY = ${JSON.stringify(keyFile)}`,
        `SUSHY_EMULATOR_AUTH_FILE = ${JSON.stringify(authFile)}`,
        `SUSHY_EMULATOR_FAKE_DRIVER = True`,
        `SUSHY_EMULATOR_STATE_DIR = ${JSON.stringify(join(dir, 'state'))}`,
        `SUSHY_EMULATOR_FAKE_SYSTEMS = ${JSON.stringify(systems.map((s) => ({ ...s, external_notifier: false })))}`.replace(/\bfalse\b/g, 'False'),
        '',
      ].join('\n'),
    );
    const started = Date.now();
    // TMPDIR: InsertMedia downloads the image into a temp file; keep it inside our folder.
    const child = spawn(SUSHY_BIN, ['--config', conf], {
      env: { ...process.env, PYTHONUNBUFFERED: '1', TMPDIR: join(dir, 'tmp') },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout!.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr!.on('data', (c: Buffer) => (output += c.toString()));
    try {
      await waitReady(port, certFile, child, () => output, opts.readyTimeoutMs ?? 20_000);
    } catch (e) {
      lastErr = e;
      await stopChild(child);
      if (/Address already in use/.test(output)) continue;
      await rm(dir, { recursive: true, force: true });
      throw e;
    }
    const startMs = Date.now() - started;
    return {
      port,
      dir,
      certFile,
      keyFile,
      fingerprint,
      username,
      password,
      credentialFile,
      startMs,
      systems,
      log: () => output,
      requests: (filter) =>
        // werkzeug colours some lines (ANSI escapes inside the quotes): strip them first.
        [...output.replace(new RegExp(String.fromCharCode(27) + '\\[[0-9;]*m', 'g'), '').matchAll(/"([A-Z]+) (\S+) HTTP\/[\d.]+" (\d{3})/g)]
          .map((m) => `${m[1]} ${m[2]} ${m[3]}`)
          .filter((r) => !filter || filter.test(r)),
      stop: async () => {
        await stopChild(child);
        await rm(dir, { recursive: true, force: true });
      },
    };
  }
  await rm(dir, { recursive: true, force: true });
  throw lastErr instanceof Error ? lastErr : new Error('sushy-emulator did not start');
}

async function waitReady(port: number, certFile: string, child: ChildProcess, output: () => string, timeoutMs: number): Promise<void> {
  const ca = await readFile(certFile);
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < 1000 && Date.now() < deadline; i++) {
    if (child.exitCode !== null) throw new Error(`sushy-emulator exited ${child.exitCode}: ${output().slice(-2000)}`);
    const ok = await new Promise<boolean>((res) => {
      const req = httpsRequest({ host: '127.0.0.1', port, path: '/redfish/v1/', ca, timeout: 1000 }, (r) => {
        r.resume();
        r.on('end', () => res(r.statusCode === 200));
      });
      req.on('error', () => res(false));
      req.on('timeout', () => req.destroy());
      req.end();
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`sushy-emulator did not answer within ${timeoutMs} ms: ${output().slice(-2000)}`);
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(timer);
}

// ---- a Redfish front end adding ETags, sessions and task monitors to sushy -------------------------------------

export interface RedfishFront {
  port: number;
  /** The front's own certificate (a different one from sushy's). */
  certFile: string;
  fingerprint: string;
  /** "METHOD /path STATUS" of every request the front answered. */
  requests: string[];
  /** Simulates another client changing every resource: ETags the client holds become stale. */
  bumpEtags(): void;
  /** Simulates another client writing between the next PATCH's GET and the PATCH itself (a 412 for it). */
  raceNextPatch(): void;
  /** Sessions currently open. */
  openSessions(): number;
  close(): Promise<void>;
}

export interface FrontOptions {
  sessions?: boolean;
  /** Answer actions with 202 + a task monitor that says 202 (Retry-After: 1) this many times first. */
  asyncActions?: number;
  /**
   * An older BMC's virtual media: InsertMedia/EjectMedia answer 405, and media are set by PATCHing the device's
   * `Image`/`Inserted` (carried out through sushy's own actions, so the state change is still sushy's).
   */
  legacyMedia?: boolean;
  /**
   * The Reset action names its allowed types through `@Redfish.ActionInfo` (no inline AllowableValues), and only
   * these: a Reset with any other type is refused 400, as a BMC that validates its parameters does.
   */
  resetActionInfo?: string[];
}

/**
 * An HTTPS server on 127.0.0.1 that forwards to sushy (with sushy's credentials, trusting sushy's certificate),
 * adding: an ETag on every JSON GET (hash of the body and a generation counter) and If-Match checks on PATCH
 * (412 when stale); a SessionService (POST → X-Auth-Token + Location, DELETE) checked against sushy's credentials;
 * and, optionally, 202 Accepted + task monitor for POSTed actions (the action itself is forwarded at once).
 */
export async function startRedfishFront(sushy: Sushy, opts: FrontOptions = {}): Promise<RedfishFront> {
  const { certFile, keyFile, fingerprint } = await makeCertificate(sushy.dir, 'front');
  const ca = await readFile(sushy.certFile);
  const basic = 'Basic ' + Buffer.from(`${sushy.username}:${sushy.password}`).toString('base64');
  const requests: string[] = [];
  const sessions = new Map<string, string>(); // token → session path
  const monitors = new Map<string, number>(); // task monitor path → 202s left
  let generation = 0;
  let raceNext = false;
  let nextId = 1;

  const upstream = (method: string, path: string, body?: Buffer): Promise<{ status: number; headers: Record<string, string>; body: Buffer }> =>
    new Promise((res, rej) => {
      const headers: Record<string, string> = { Authorization: basic, Accept: 'application/json' };
      if (body?.length) {
        headers['Content-Type'] = 'application/json';
        headers['Content-Length'] = String(body.length);
      }
      const req = httpsRequest({ host: '127.0.0.1', port: sushy.port, method, path, headers, ca, timeout: 15_000 }, (r) => {
        const chunks: Buffer[] = [];
        r.on('data', (c: Buffer) => chunks.push(c));
        r.on('end', () => res({ status: r.statusCode ?? 0, headers: r.headers as Record<string, string>, body: Buffer.concat(chunks) }));
      });
      req.on('error', rej);
      req.on('timeout', () => req.destroy(new Error('upstream timeout')));
      req.end(body);
    });
  const etagOf = (body: Buffer) => `W/"${createHash('sha256').update(body).update(String(generation)).digest('hex').slice(0, 16)}"`;

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<number> => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks);
    const method = req.method ?? 'GET';
    const path = req.url ?? '/';
    const send = (status: number, json?: unknown, headers: Record<string, string> = {}) => {
      const out = json === undefined ? '' : JSON.stringify(json);
      res.writeHead(status, { ...headers, ...(out ? { 'Content-Type': 'application/json' } : {}) });
      res.end(out);
      return status;
    };
    const sessionsPath = '/redfish/v1/SessionService/Sessions';
    const isRoot = /^\/redfish\/v1\/?$/.test(path);
    if (opts.sessions && method === 'POST' && path === sessionsPath) {
      const creds = JSON.parse(body.toString() || '{}') as { UserName?: string; Password?: string };
      if (creds.UserName !== sushy.username || creds.Password !== sushy.password) return send(401, { error: { message: 'bad credentials' } });
      const token = randomBytes(16).toString('hex');
      const at = `${sessionsPath}/${nextId++}`;
      sessions.set(token, at);
      return send(201, { '@odata.id': at, Id: at.split('/').pop(), UserName: creds.UserName }, { 'X-Auth-Token': token, Location: at });
    }
    if (!isRoot) {
      const token = req.headers['x-auth-token'];
      const authorized = (opts.sessions && typeof token === 'string' && sessions.has(token)) || (!opts.sessions && req.headers.authorization === basic);
      if (!authorized) return send(401, { error: { message: 'authentication required' } });
      if (opts.sessions && method === 'DELETE' && path.startsWith(`${sessionsPath}/`)) {
        for (const [t, p] of sessions) if (p === path) sessions.delete(t);
        return send(204);
      }
    }
    if (method === 'GET' && monitors.has(path)) {
      const left = monitors.get(path)!;
      if (left > 0) {
        monitors.set(path, left - 1);
        return send(202, { TaskState: 'Running', PercentComplete: 50 }, { 'Retry-After': '1', Location: path });
      }
      monitors.delete(path);
      return send(200, { '@odata.type': '#Task.v1_4_3.Task', TaskState: 'Completed', TaskStatus: 'OK', PercentComplete: 100 });
    }
    const media = /^(\/redfish\/v1\/.*\/VirtualMedia\/[^/]+)(?:\/Actions\/VirtualMedia\.(InsertMedia|EjectMedia))?$/.exec(path);
    if (opts.legacyMedia && method === 'POST' && media?.[2]) {
      return send(405, { error: { code: 'Base.1.8.ActionNotSupported', message: `${media[2]} is not supported: PATCH the VirtualMedia resource` } });
    }
    const reset = /^(\/redfish\/v1\/Systems\/[^/]+)\/(?:Actions\/ComputerSystem\.Reset|ResetActionInfo)$/.exec(path);
    if (opts.resetActionInfo && reset && method === 'GET' && path.endsWith('/ResetActionInfo')) {
      return send(200, {
        '@odata.id': path,
        Id: 'ResetActionInfo',
        Name: 'Reset Action Info',
        Parameters: [{ Name: 'ResetType', Required: true, DataType: 'String', AllowableValues: opts.resetActionInfo }],
      });
    }
    if (opts.resetActionInfo && reset && method === 'POST') {
      const type = (JSON.parse(body.toString() || '{}') as { ResetType?: string }).ResetType;
      if (!type || !opts.resetActionInfo.includes(type)) {
        return send(400, { error: { code: 'Base.1.8.ActionParameterNotSupported', message: `ResetType ${String(type)} is not supported` } });
      }
    }
    if (method === 'PATCH') {
      const current = await upstream('GET', path);
      const ifMatch = req.headers['if-match'];
      if (raceNext && ifMatch !== undefined) {
        raceNext = false;
        generation++;
      }
      if (current.status === 200 && ifMatch !== undefined && ifMatch !== etagOf(current.body)) {
        return send(412, { error: { message: 'ETag does not match the resource', '@Message.ExtendedInfo': [{ MessageId: 'Base.1.8.PreconditionFailed' }] } });
      }
    }
    if (opts.legacyMedia && method === 'PATCH' && media && !media[2]) {
      const want = JSON.parse(body.toString() || '{}') as { Image?: string | null; Inserted?: boolean; WriteProtected?: boolean };
      const eject = want.Image === null || want.Inserted === false;
      const action = `${media[1]}/Actions/VirtualMedia.${eject ? 'EjectMedia' : 'InsertMedia'}`;
      const payload = eject ? {} : { Image: want.Image, Inserted: true, WriteProtected: want.WriteProtected ?? true };
      const done = await upstream('POST', action, Buffer.from(JSON.stringify(payload)));
      generation++; // the resource changed
      if (done.status >= 300) return send(done.status, JSON.parse(done.body.toString() || '{}'));
      return send(204);
    }
    const up = await upstream(method, path, body);
    const headers: Record<string, string> = {};
    if (up.headers.location) headers.Location = up.headers.location;
    if (method === 'GET' && up.status === 200) {
      let json = JSON.parse(up.body.toString()) as Record<string, unknown>;
      if (isRoot && opts.sessions) {
        json = { ...json, SessionService: { '@odata.id': '/redfish/v1/SessionService' }, Links: { Sessions: { '@odata.id': sessionsPath } } };
      }
      const actions = json.Actions as Record<string, Record<string, unknown>> | undefined;
      if (opts.resetActionInfo && actions?.['#ComputerSystem.Reset']) {
        const { ['ResetType@Redfish.AllowableValues']: _inline, ...rest } = actions['#ComputerSystem.Reset'];
        json = { ...json, Actions: { ...actions, '#ComputerSystem.Reset': { ...rest, '@Redfish.ActionInfo': `${path.replace(/\/$/, '')}/ResetActionInfo` } } };
      }
      headers.ETag = etagOf(up.body);
      return send(200, json, headers);
    }
    if (method === 'POST' && opts.asyncActions && /\/Actions\//.test(path) && up.status < 300) {
      const monitor = `/redfish/v1/TaskService/TaskMonitors/${nextId++}`;
      monitors.set(monitor, opts.asyncActions);
      return send(202, undefined, { Location: monitor, 'Retry-After': '1' });
    }
    res.writeHead(up.status, up.body.length ? { 'Content-Type': 'application/json', ...headers } : headers);
    res.end(up.body);
    return up.status;
  };

  const server: HttpsServer = createHttpsServer({ cert: await readFile(certFile), key: await readFile(keyFile) }, (req, res) => {
    handle(req, res).then(
      (status) => requests.push(`${req.method} ${req.url} ${status}`),
      (e: Error) => {
        requests.push(`${req.method} ${req.url} 500`);
        if (!res.headersSent) res.writeHead(500, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ error: { message: `front: ${e.message}` } }));
      },
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  return {
    port,
    certFile,
    fingerprint,
    requests,
    bumpEtags: () => void generation++,
    raceNextPatch: () => void (raceNext = true),
    openSessions: () => sessions.size,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
