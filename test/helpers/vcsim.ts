/**
 * A real, throwaway vcsim (govmomi's vCenter simulator, built by scripts/install-vcsim.sh, linked as .tools/bin/vcsim) on
 * 127.0.0.1 for the vSphere driver and ESXi attach tests.
 *
 * TLS: the helper makes a self-signed certificate for 127.0.0.1 with openssl and hands it to vcsim (-tlscert /
 * -tlskey); tests pin it as the CA file. Login is checked: vcsim runs with a random user name and password,
 * which tests pass by reference (env vars). Inventory: one datacenter, one cluster of `clusterHosts` hosts, no
 * VMs, no distributed switch (-pg 0) — tests add the switch and the host they onboard (`seed`).
 * Every wait is bounded; stop() kills vcsim and removes the folder.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { request } from 'node:https';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { VsphereClient, type VcenterTarget } from '../../src/drivers/vsphere/client';
import { findByName, readDvs, readPortgroup } from '../../src/drivers/vsphere/dvs';
import { many, morSchema, parseWith, type Mor } from '../../src/drivers/vsphere/schema';
import { el, xml } from '../../src/transports/soap';
import { freePort } from './sshd';
import { credentialsSubdir, SECRET_PREFIX } from './credentials';

const execFileP = promisify(execFile);
export const VCSIM_BIN = resolve(__dirname, '../../.tools/bin/vcsim');

export interface Vcsim {
  port: number;
  /** The certificate vcsim serves (self-signed, SAN IP:127.0.0.1): the CA file to pin. */
  caFile: string;
  /** Env var names holding the user name and password vcsim accepts (set in process.env by start). */
  usernameEnv: string;
  passwordEnv: string;
  dir: string;
  /** ms from spawn until /about answered over the pinned TLS. */
  startMs: number;
  target(overrides?: Partial<VcenterTarget>): VcenterTarget;
  /** A logged-in client (close it). */
  client(): Promise<VsphereClient>;
  log(): string;
  /** The SOAP trace (with `trace: true`), else ''. */
  trace(): Promise<string>;
  stop(): Promise<void>;
}

export interface StartVcsimOptions {
  /** Hosts in the cluster besides the ones tests add. Default 1. */
  clusterHosts?: number;
  /** Bound for the wait until /about answers. Default 20000. */
  readyTimeoutMs?: number;
  /**
   * A standalone ESXi host (`vcsim -esx`: its API answers as HostAgent, ESXi 6.5.0 build 5969303) instead of a
   * vCenter — what the tests use as "the installed host".
   */
  esx?: boolean;
  /** Serve this certificate and key (e.g. the host certificate a spec pins) instead of a fresh one. */
  tls?: { cert: string; key: string };
  /** Listen on this port (e.g. the spec's apiPort); default a free one. */
  port?: number;
  /** Record every SOAP request and answer (vcsim -trace) to a file `trace()` reads: what was sent on the wire. */
  trace?: boolean;
}

/** A self-signed P-256 certificate for 127.0.0.1 (and localhost), as PEM files `<name>.crt` / `<name>.key`. */
export async function makeCertificate(dir: string, name: string): Promise<{ cert: string; key: string }> {
  const cert = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  await execFileP('openssl', [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-days',
    '2',
    '-subj',
    `/CN=underlay-test-${name}`,
    '-addext',
    'subjectAltName=IP:127.0.0.1,DNS:localhost',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-keyout',
    key,
    '-out',
    cert,
  ]);
  return { cert, key };
}

function aboutAnswers(port: number, ca: Buffer, timeoutMs: number): Promise<boolean> {
  return new Promise((done) => {
    const req = request({ host: '127.0.0.1', port, path: '/about', method: 'GET', ca, timeout: timeoutMs }, (res) => {
      res.resume();
      res.on('end', () => done(res.statusCode === 200));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => done(false));
    req.end();
  });
}

export async function startVcsim(opts: StartVcsimOptions = {}): Promise<Vcsim> {
  if (!existsSync(VCSIM_BIN)) throw new Error(`${VCSIM_BIN} is missing: run \`npm run setup\` (scripts/install-vcsim.sh)`);
  const dir = await credentialsSubdir('vcsim-'); // the CA file: inside the worker's scope
  const tag = randomBytes(4).toString('hex').toUpperCase();
  const usernameEnv = `${SECRET_PREFIX}TEST_VC_USER_${tag}`;
  const passwordEnv = `${SECRET_PREFIX}TEST_VC_PASS_${tag}`;
  process.env[usernameEnv] = `administrator-${tag.toLowerCase()}`;
  process.env[passwordEnv] = randomBytes(12).toString('base64url');
  try {
    const { cert, key } = opts.tls ?? (await makeCertificate(dir, 'vcsim'));
    const ca = await readFile(cert);
    const readyTimeoutMs = opts.readyTimeoutMs ?? 20_000;
    for (let attempt = 1; attempt <= 3; attempt++) {
      const port = opts.port ?? (await freePort());
      let output = '';
      const started = Date.now();
      const model = opts.esx
        ? ['-esx']
        : [
            '-dc',
            '1',
            '-cluster',
            '1',
            '-host',
            String(opts.clusterHosts ?? 1),
            '-standalone-host',
            '0',
            '-vm',
            '0',
            '-pg',
            '0',
            '-ds',
            '0',
            '-pod',
            '0',
            '-app',
            '0',
            '-folder',
            '0',
            '-pool',
            '0',
          ];
      const child: ChildProcess = spawn(
        VCSIM_BIN,
        [
          '-l',
          `127.0.0.1:${port}`,
          ...model,
          ...(opts.trace ? ['-trace', '-trace-file', join(dir, 'trace.xml')] : []),
          '-username',
          process.env[usernameEnv]!,
          '-password',
          process.env[passwordEnv]!,
          '-tlscert',
          cert,
          '-tlskey',
          key,
          // vcsim exits when its stdin closes: if this test process dies without stop(), so does vcsim.
          '-stdinexit',
        ],
        { stdio: ['pipe', 'pipe', 'pipe'] },
      );
      const keep = (c: Buffer) => {
        output = (output + c.toString('utf8')).slice(-20_000);
      };
      child.stdout!.on('data', keep);
      child.stderr!.on('data', keep);
      let exited = false;
      const exit = new Promise<void>((r) => child.once('exit', () => ((exited = true), r())));
      const deadline = Date.now() + readyTimeoutMs;
      let ready = false;
      while (!exited && Date.now() < deadline) {
        if (await aboutAnswers(port, ca, 1_000)) {
          ready = true;
          break;
        }
        await new Promise((r) => setTimeout(r, 50));
      }
      if (!ready) {
        child.kill('SIGKILL');
        await exit;
        if (attempt < 3 && opts.port === undefined && /address already in use/.test(output)) continue;
        throw new Error(`vcsim did not answer on 127.0.0.1:${port} within ${readyTimeoutMs} ms: ${output.slice(-2000)}`);
      }
      const startMs = Date.now() - started;
      const vc: Vcsim = {
        port,
        caFile: cert,
        usernameEnv,
        passwordEnv,
        dir,
        startMs,
        target: (o = {}) => ({ address: '127.0.0.1', port, credentials: { usernameEnv, passwordEnv }, caFile: cert, label: 'vcsim-test', ...o }),
        client: () => VsphereClient.connect(vc.target()),
        log: () => output,
        trace: () => (opts.trace ? readFile(join(dir, 'trace.xml'), 'utf8').catch(() => '') : Promise.resolve('')),
        stop: async () => {
          if (!exited) {
            child.kill('SIGTERM');
            const killed = await Promise.race([exit.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 5_000))]);
            if (!killed) {
              child.kill('SIGKILL');
              await exit;
            }
          }
          delete process.env[usernameEnv];
          delete process.env[passwordEnv];
          await rm(dir, { recursive: true, force: true });
        },
      };
      return vc;
    }
    throw new Error('vcsim: no free port after 3 attempts');
  } catch (err) {
    delete process.env[usernameEnv];
    delete process.env[passwordEnv];
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

const wait = { sleep: (ms: number) => new Promise<void>((r) => setTimeout(r, ms)), timeoutMs: 10_000 };

/** What a vCenter administrator does before underlay attaches a host: a distributed switch, the host in a cluster. */
export async function createDvs(c: VsphereClient, name: string): Promise<Mor> {
  const [dc] = await c.findAll('Datacenter', ['networkFolder']);
  const folder = parseWith(morSchema, dc!.props.networkFolder, 'networkFolder', 'test');
  await c.runTask('CreateDVS_Task', folder, xml`<spec><configSpec xsi:type="VMwareDVSConfigSpec">${el('name', name)}</configSpec></spec>`, wait);
  const [dvs] = await findByName(c, 'DistributedVirtualSwitch', name);
  return dvs!;
}

/**
 * A new cluster in the (first) datacenter. vcsim v0.46.3 panics when a host is added to a cluster one of whose hosts
 * was removed (the cluster's EnvironmentBrowser keeps the removed host), so tests that remove hosts use a fresh one.
 */
export async function createCluster(c: VsphereClient, name: string): Promise<Mor> {
  const [dc] = await c.findAll('Datacenter', ['hostFolder']);
  const folder = parseWith(morSchema, dc!.props.hostFolder, 'hostFolder', 'test');
  const res = await c.invoke('CreateClusterEx', folder, [el('name', name), xml`<spec></spec>`]);
  return parseWith(morSchema, res.returnval, 'CreateClusterEx', 'test');
}

/** Adds a host named `name` to a cluster (default the first), as vCenter's "Add Host" does. */
export async function addClusterHost(c: VsphereClient, name: string, clusterName?: string): Promise<Mor> {
  const clusters = await c.findAll('ClusterComputeResource', ['name']);
  const cluster = clusterName ? clusters.find((k) => JSON.stringify(k.props.name).includes(`"${clusterName}"`)) : clusters[0];
  await c.runTask('AddHost_Task', cluster!.obj, [xml`<spec>${el('hostName', name)}${el('force', true)}</spec>`, el('asConnected', true)], wait);
  const [host] = await findByName(c, 'HostSystem', name);
  return host!;
}

/** The moref values of a switch's host members. */
export async function dvsMembers(c: VsphereClient, dvs: Mor): Promise<string[]> {
  const oc = await c.properties(dvs, ['summary.hostMember']);
  const v = oc.props['summary.hostMember'];
  const list = parseWith(many(morSchema), typeof v === 'object' && v ? (v as Record<string, unknown>).ManagedObjectReference : undefined, 'hostMember', 'test');
  return list.map((m) => m.value);
}

/**
 * Changes made "by hand" to an attached host, for drift tests: the port group's VLAN, and the host's proxy switch
 * left with only `keep` of its pnics. The whole host network config is sent (vSwitch0 without uplinks, the proxy
 * switch, vmk0 on the port group), as a host reports its configuration after such a change — vcsim keeps only the
 * last HostNetworkConfig it was sent.
 */
export async function driftByHand(c: VsphereClient, o: { host: string; switch: string; portgroup: string; vlan: number; keep: string[] }): Promise<void> {
  const [pgRef] = await findByName(c, 'DistributedVirtualPortgroup', o.portgroup);
  const pg = await readPortgroup(c, pgRef!);
  await c.runTask(
    'ReconfigureDVPortgroup_Task',
    pg.ref,
    xml`<spec xsi:type="DVPortgroupConfigSpec">${el('name', pg.name)}${el('numPorts', pg.numPorts)}<defaultPortConfig xsi:type="VMwareDVSPortSetting"><vlan xsi:type="VmwareDistributedVirtualSwitchVlanIdSpec"><inherited>false</inherited>${el('vlanId', o.vlan)}</vlan></defaultPortConfig>${el('type', pg.type)}</spec>`,
    wait,
  );
  const [host] = await findByName(c, 'HostSystem', o.host);
  const ns = parseWith(morSchema, (await c.properties(host!, ['configManager.networkSystem'])).props['configManager.networkSystem'], 'ns', 'test');
  const [dvsRef] = await findByName(c, 'DistributedVirtualSwitch', o.switch);
  const uuid = (await readDvs(c, dvsRef!)).uuid;
  const pnics = o.keep.map((p) => xml`<pnicSpec>${el('pnicDevice', p)}</pnicSpec>`);
  await c.invoke('UpdateNetworkConfig', ns, [
    xml`<config><vswitch><changeOperation>edit</changeOperation><name>vSwitch0</name><spec><numPorts>128</numPorts><policy><nicTeaming><nicOrder></nicOrder></nicTeaming></policy></spec></vswitch><proxySwitch><changeOperation>edit</changeOperation>${el('uuid', uuid)}<spec><backing xsi:type="DistributedVirtualSwitchHostMemberPnicBacking">${pnics}</backing></spec></proxySwitch><vnic><changeOperation>edit</changeOperation><device>vmk0</device><portgroup></portgroup><spec><distributedVirtualPort>${el('switchUuid', uuid)}${el('portgroupKey', pg.key)}</distributedVirtualPort></spec></vnic></config>`,
    el('changeMode', 'modify'),
  ]);
}
