/**
 * A real, throwaway OpenSSH sshd on 127.0.0.1 for transport tests.
 *
 * Runs `/usr/sbin/sshd -D -e` as the current user (root) with an ed25519 host key and an authorized user key
 * made by ssh-keygen in a mkdtemp folder. Everything it starts is stopped, and the folder removed, by stop().
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { readFile, readdir, rm, writeFile, appendFile, mkdir } from 'node:fs/promises';
import { createServer, connect as tcpConnect } from 'node:net';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { SshTarget } from '../../src/transports/ssh';
import { credentialsSubdir } from './credentials';

const execFileP = promisify(execFile);
export const SSHD = '/usr/sbin/sshd';

export interface StartSshdOptions {
  /** Extra sshd_config lines; placed first so they win over the defaults (sshd keeps a keyword's first value). */
  extraConfig?: string[];
  /** Bound for the wait until the port answers with an SSH banner. Default 10000. */
  readyTimeoutMs?: number;
}

export interface GeneratedKey {
  privateKeyPath: string;
  /** One `.pub` line: `ssh-ed25519 AAAA... comment`. */
  publicKey: string;
}

export interface Sshd {
  port: number;
  hostKeyFingerprint: string;
  userKeyPath: string;
  userPublicKey: string;
  user: string;
  dir: string;
  target(overrides?: Partial<SshTarget>): SshTarget;
  /** Appends a public key line to authorized_keys. */
  authorize(publicKey: string): Promise<void>;
  /** Everything sshd logged to stderr so far (-e). */
  log(): string;
  /** Logins sshd accepted so far (its own count: one per SSH handshake that authenticated). */
  acceptedLogins(): number;
  /**
   * Kills the per-connection sshd processes (SIGKILL; the listener keeps running), so every open connection
   * drops as a crashed peer or a cut cable would. Resolves with how many processes it killed.
   */
  dropConnections(): Promise<number>;
  /**
   * SIGKILL to sshd and every session process it forked (commands in flight die with their sessions; a process
   * that left the session — setsid, reparented — survives, as on a real host). The port stays free for restart().
   */
  crash(): Promise<void>;
  /** Starts sshd again on the same port with the same host key and configuration (after crash()). */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/** ssh-keygen an ed25519 key pair (no shell: arguments are passed as-is). */
export async function generateKey(dir: string, name: string, passphrase = '', extraArgs: string[] = []): Promise<GeneratedKey> {
  const privateKeyPath = join(dir, name);
  await execFileP('ssh-keygen', ['-q', '-t', 'ed25519', '-N', passphrase, '-C', `underlay-test-${name}`, '-f', privateKeyPath, ...extraArgs]);
  const publicKey = (await readFile(`${privateKeyPath}.pub`, 'utf8')).trim();
  return { privateKeyPath, publicKey };
}

/** `ssh-keygen -lf -E sha256 <pub>` → `SHA256:...` (second field). */
export async function keygenFingerprint(pubPath: string): Promise<string> {
  const { stdout } = await execFileP('ssh-keygen', ['-lf', pubPath, '-E', 'sha256']);
  const fp = stdout.trim().split(/\s+/)[1];
  if (!fp?.startsWith('SHA256:')) throw new Error(`unexpected ssh-keygen -lf output: ${stdout}`);
  return fp;
}

/** A port that was free a moment ago (sshd start is retried if someone grabs it in between). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => (port ? resolve(port) : reject(new Error('no port'))));
    });
  });
}

export async function startSshd(opts: StartSshdOptions = {}): Promise<Sshd> {
  const dir = await credentialsSubdir('sshd-'); // the user key is a credential: inside the worker's scope
  try {
    // sshd refuses to start without its privilege-separation directory.
    await mkdir('/run/sshd', { recursive: true, mode: 0o755 });
    const hostKeyPath = join(dir, 'ssh_host_ed25519_key');
    await execFileP('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'underlay-test-host', '-f', hostKeyPath]);
    const hostKeyFingerprint = await keygenFingerprint(`${hostKeyPath}.pub`);
    const userKey = await generateKey(dir, 'id_user');
    const authorizedKeys = join(dir, 'authorized_keys');
    await writeFile(authorizedKeys, userKey.publicKey + '\n', { mode: 0o600 });
    const user = userInfo().username;

    let lastError: unknown;
    for (let attempt = 0; attempt < 3; attempt++) {
      const port = await freePort();
      const cfg = join(dir, 'sshd_config');
      await writeFile(
        cfg,
        [
          // First: for most sshd_config keywords the first value wins, so these override the defaults below.
          ...(opts.extraConfig ?? []),
          `Port ${port}`,
          'ListenAddress 127.0.0.1',
          `HostKey ${hostKeyPath}`,
          `AuthorizedKeysFile ${authorizedKeys}`,
          'StrictModes no',
          'PermitRootLogin prohibit-password',
          'PubkeyAuthentication yes',
          'PasswordAuthentication no',
          'KbdInteractiveAuthentication no',
          'UsePAM no',
          `PidFile ${join(dir, 'sshd.pid')}`,
          'MaxSessions 50',
          'MaxStartups 50:30:100',
          'LogLevel INFO',
          '',
        ].join('\n'),
      );
      let log = '';
      const spawnSshd = (): ChildProcess => {
        const p = spawn(SSHD, ['-D', '-e', '-f', cfg], { stdio: ['ignore', 'ignore', 'pipe'] });
        p.stderr!.setEncoding('utf8').on('data', (d: string) => {
          log = (log + d).slice(-200_000);
        });
        return p;
      };
      let proc = spawnSshd();
      try {
        await waitForBanner(port, proc, () => log, opts.readyTimeoutMs ?? 10_000);
      } catch (e) {
        lastError = e;
        await killTree(proc);
        continue;
      }
      const sshd: Sshd = {
        port,
        hostKeyFingerprint,
        userKeyPath: userKey.privateKeyPath,
        userPublicKey: userKey.publicKey,
        user,
        dir,
        target: (overrides = {}) => ({
          host: '127.0.0.1',
          port,
          user,
          hostKey: hostKeyFingerprint,
          credentials: { privateKeyFile: userKey.privateKeyPath },
          label: 'test-server',
          ...overrides,
        }),
        authorize: (publicKey) => appendFile(authorizedKeys, publicKey.trim() + '\n'),
        log: () => log,
        acceptedLogins: () => log.split('\n').filter((l) => l.startsWith('Accepted publickey')).length,
        dropConnections: async () => {
          let killed = 0;
          for (const pid of await descendants(proc.pid!)) {
            try {
              process.kill(pid, 'SIGKILL');
              killed++;
            } catch {
              /* already gone */
            }
          }
          return killed;
        },
        crash: async () => {
          const pids = [proc.pid!, ...(await descendants(proc.pid!))];
          const exited = proc.exitCode !== null || proc.signalCode !== null ? Promise.resolve() : new Promise<void>((r) => proc.once('exit', () => r()));
          for (const pid of pids) {
            try {
              process.kill(pid, 'SIGKILL');
            } catch {
              /* already gone */
            }
          }
          await Promise.race([exited, sleep(5_000)]);
        },
        restart: async () => {
          proc = spawnSshd();
          await waitForBanner(port, proc, () => log, opts.readyTimeoutMs ?? 10_000);
        },
        stop: async () => {
          await killTree(proc);
          await rm(dir, { recursive: true, force: true });
        },
      };
      return sshd;
    }
    throw lastError instanceof Error ? lastError : new Error(String(lastError));
  } catch (e) {
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
}

/** Polls (bounded in tries and time) until the port sends an `SSH-` identification line. */
async function waitForBanner(port: number, proc: ChildProcess, log: () => string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < 200 && Date.now() < deadline; i++) {
    if (proc.exitCode !== null || proc.signalCode !== null) {
      throw new Error(`sshd exited (${proc.exitCode ?? proc.signalCode}) before listening:\n${log()}`);
    }
    if (await bannerOnce(port, Math.min(1000, Math.max(50, deadline - Date.now())))) return;
    await sleep(50);
  }
  throw new Error(`sshd did not answer with an SSH banner on 127.0.0.1:${port} within ${timeoutMs} ms:\n${log()}`);
}

function bannerOnce(port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = tcpConnect({ host: '127.0.0.1', port });
    let buf = '';
    const done = (ok: boolean): void => {
      clearTimeout(t);
      sock.destroy();
      resolve(ok);
    };
    const t = setTimeout(() => done(false), timeoutMs);
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      buf += d;
      if (buf.startsWith('SSH-')) done(true);
      else if (buf.length >= 4) done(false);
    });
    sock.on('error', () => done(false));
    sock.on('close', () => done(false));
  });
}

/**
 * Stops sshd and the per-connection sshd processes it forked (they setsid() away from its process group, so
 * they are found through /proc by parent pid). Only descendants of the sshd we spawned are touched.
 */
async function killTree(proc: ChildProcess): Promise<void> {
  if (proc.pid === undefined) return;
  const pids = [proc.pid, ...(await descendants(proc.pid))];
  for (const pid of pids.reverse()) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      /* already gone */
    }
  }
  const exited = proc.exitCode !== null || proc.signalCode !== null ? Promise.resolve() : new Promise<void>((r) => proc.once('exit', () => r()));
  const timedOut = await Promise.race([exited.then(() => false), sleep(3000).then(() => true)]);
  if (timedOut) {
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
  }
}

async function descendants(root: number): Promise<number[]> {
  const parentOf = new Map<number, number>();
  for (const name of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(name)) continue;
    const stat = await readFile(`/proc/${name}/stat`, 'utf8').catch(() => '');
    // Field 4 (ppid) follows the parenthesised command name, which may itself contain spaces or ')'.
    const after = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ppid = Number(after[1]);
    if (Number.isFinite(ppid)) parentOf.set(Number(name), ppid);
  }
  const out: number[] = [];
  const frontier = [root];
  while (frontier.length && out.length < 10_000) {
    const p = frontier.pop()!;
    for (const [pid, ppid] of parentOf) {
      if (ppid === p) {
        out.push(pid);
        frontier.push(pid);
      }
    }
  }
  return out;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
