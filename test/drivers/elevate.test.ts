/**
 * Least privilege against the real thing: a real sshd on 127.0.0.1, a non-root login made by the test (useradd)
 * whose sudo is restricted to the shipped fragment (deploy/sudoers/underlay, for that login), and real sudo.
 * sudo's own log file (one line per command it runs) shows what ran as root. The machine's root runs the test.
 * Run: node --import tsx --test test/drivers/elevate.test.ts
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { CommandFailedError, UnsupportedPlatformError } from '../../src/common/errors';
import { ELEVATED_COMMANDS, elevationShims, sudoersFragment } from '../../src/drivers/elevate';
import { convergeFilesScript, hashFiles, readFiles, restoreFilesScript, sha256 } from '../../src/drivers/linux/files';
import { listAddresses, listLinks, readLldpNeighbours, readNicSysfs } from '../../src/drivers/linux/net';
import { RemoteHost } from '../../src/drivers/remote';
import { sh, writeTo } from '../../src/drivers/shell';
import { SshSession } from '../../src/transports/ssh';
import { startSshd, type Sshd } from '../helpers/sshd';

const run = promisify(execFile);
const root = resolve(__dirname, '../..');
const USER = `ulpriv${process.pid % 100000}`;
const FRAGMENT = `/etc/sudoers.d/underlay-test-${USER}`;

let sshd: Sshd;
let work: string;
let sudoLog: string;
let session: SshSession;
let host: RemoteHost;
let uid: number;

/**
 * What sudo logged so far, then forgets it: the commands it ran as root (`… ; USER=root ; COMMAND=/usr/sbin/ip
 * -j link show`), and apart from them the ones it refused (`… : command not allowed ; … COMMAND=…`).
 */
async function sudoLogged(): Promise<{ ran: string[]; refused: string[] }> {
  const text = await readFile(sudoLog, 'utf8').catch(() => '');
  await writeFile(sudoLog, '');
  const out = { ran: [] as string[], refused: [] as string[] };
  for (const line of text.replace(/\n\s+/g, ' ').split('\n')) {
    const cmd = /COMMAND=(.*)$/.exec(line)?.[1]?.trim();
    if (cmd) (/command not allowed|password is required/.test(line) ? out.refused : out.ran).push(cmd);
  }
  return out;
}

async function sudoCommands(): Promise<string[]> {
  return (await sudoLogged()).ran;
}

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'underlay-elevate-'));
  await chmod(work, 0o755);
  sudoLog = join(work, 'sudo.log');
  await run('useradd', ['--system', '-M', '-d', work, '-s', '/bin/sh', USER]);
  await run('usermod', ['-p', '*', USER]); // not locked ('!'), which sshd without PAM refuses; no password either
  uid = Number((await run('id', ['-u', USER])).stdout.trim());
  // The shipped fragment, for this login, plus a log file of every command sudo runs for it (the evidence).
  await writeFile(FRAGMENT, `${sudoersFragment(USER)}Defaults:${USER} logfile=${sudoLog}\n`, { mode: 0o440 });
  await run('visudo', ['-cf', FRAGMENT]);
  const keys = join(work, 'keys');
  await mkdir(keys, { mode: 0o755 });
  sshd = await startSshd({ extraConfig: [`AuthorizedKeysFile ${keys}/%u`] });
  await writeFile(join(keys, USER), sshd.userPublicKey + '\n', { mode: 0o644 });
  session = await SshSession.connect(sshd.target({ user: USER }));
  host = new RemoteHost(session, 'test-server', false, 'bond');
});

after(async () => {
  session?.close();
  await sshd?.stop();
  await rm(FRAGMENT, { force: true });
  await run('userdel', [USER]).catch(() => undefined);
  await rm(work, { recursive: true, force: true });
});

describe('the sudoers fragment', () => {
  test('deploy/sudoers/underlay is the one generated from ELEVATED_COMMANDS, and visudo accepts it', async () => {
    assert.equal(await readFile(join(root, 'deploy/sudoers/underlay'), 'utf8'), sudoersFragment(), 'regenerate: underlay sudoers > deploy/sudoers/underlay');
    await run('visudo', ['-cf', join(root, 'deploy/sudoers/underlay')]);
    const { stdout } = await run(process.execPath, ['--import', 'tsx', join(root, 'src/cli/main.ts'), 'sudoers', '--user', 'deploy'], { cwd: root });
    assert.equal(stdout, sudoersFragment('deploy'));
    assert.match(stdout, /^deploy ALL=\(root\) NOPASSWD: UNDERLAY_NETWORK, /m);
    assert.throws(() => sudoersFragment('root ALL=(ALL) ALL #'), /not a login name/);
  });

  test('every listed path is absolute and each shim names exactly one listed command', () => {
    const shims = elevationShims().text.trim().split('\n');
    assert.equal(shims.length, ELEVATED_COMMANDS.length);
    for (const [i, c] of ELEVATED_COMMANDS.entries()) {
      assert.match(c.path, /^\/usr\/s?bin\/[a-z0-9-]+$/);
      assert.equal(shims[i], `if [ -e ${c.path} ]; then alias ${c.name}='/usr/bin/sudo -n ${c.path}'; fi`);
    }
  });
});

describe('a non-root login restricted to the fragment, over a real sshd', () => {
  test('reads run without sudo: links, addresses, NIC sysfs — nothing in sudo’s log', async () => {
    await sudoCommands();
    const links = await listLinks(host);
    assert.ok(links.has('lo'));
    assert.ok((await listAddresses(host)) instanceof Map);
    assert.ok((await readNicSysfs(host)).has('lo'));
    assert.equal((await host.read(sh`id -u`, { description: 'id', privileged: false })).trim(), String(uid));
    assert.deepEqual(await sudoCommands(), []);
  });

  test('a privileged script runs as the login user; only the listed commands in it run as root, each logged', async () => {
    await sudoCommands();
    const out = await host.read(sh`id -u; ip -j link show dev lo >/dev/null && echo ip-ok; command -v nmcli || echo no-nmcli`, { description: 'mixed' });
    assert.deepEqual(out.trim().split('\n'), [String(uid), 'ip-ok', 'no-nmcli'], 'the script itself is not root; an absent tool stays absent');
    assert.deepEqual(await sudoCommands(), ['/usr/sbin/ip -j link show dev lo']);
  });

  test('an absent listed tool is still told apart: no lldpctl here → UnsupportedPlatformError, not a sudo failure', async () => {
    await assert.rejects(readLldpNeighbours(host), UnsupportedPlatformError);
  });

  test('root-owned files: written through tee, backed up into a root-only store and restored byte for byte', async () => {
    const dir = join(work, 'etc-net');
    const store = join(work, 'backup');
    await mkdir(dir, { mode: 0o755 });
    const path = join(dir, 'bond0.cfg');
    const secret = join(dir, 'eth1.nmconnection');
    await writeFile(path, 'old\n', { mode: 0o644 });
    await writeFile(secret, 'psk=1\n', { mode: 0o600 }); // a NetworkManager keyfile is root-only
    const paths = [path, secret, join(dir, 'absent')];
    const pre = await hashFiles(host, paths);
    assert.deepEqual(pre, { [path]: sha256('old\n'), [secret]: sha256('psk=1\n'), [join(dir, 'absent')]: null });
    assert.deepEqual(await readFiles(host, [secret]), { [secret]: 'psk=1\n' });
    await sudoCommands();

    const desired = [
      { path, content: 'new\n', mode: '0640' },
      { path: secret, content: null },
      { path: join(dir, 'absent'), content: 'made\n' },
    ];
    await host.run(convergeFilesScript(desired, pre, store)!, { description: 'converge files' });
    assert.equal(await readFile(path, 'utf8'), 'new\n');
    assert.equal((await stat(path)).uid, 0, 'written by root');
    assert.equal((await stat(path)).mode & 0o777, 0o640);
    await assert.rejects(stat(secret));
    assert.equal((await stat(store)).mode & 0o777, 0o700);
    const used = new Set((await sudoCommands()).map((c) => c.split(' ')[0]));
    assert.deepEqual([...used].sort(), ['/usr/bin/chmod', '/usr/bin/cp', '/usr/bin/mkdir', '/usr/bin/mv', '/usr/bin/rm', '/usr/bin/sha256sum', '/usr/bin/tee']);

    const now = await hashFiles(host, paths);
    await host.run(restoreFilesScript(pre, now, store)!, { description: 'restore files' });
    assert.deepEqual(await hashFiles(host, paths), pre);
    assert.equal((await stat(secret)).mode & 0o777, 0o600);
    assert.equal(await readFile(secret, 'utf8'), 'psk=1\n');
  });

  test('sysfs-style writes go through tee: writeTo a root-owned file', async () => {
    await sudoCommands();
    const attr = join(work, 'sriov_numvfs');
    await writeFile(attr, '0\n', { mode: 0o644 });
    await host.run(writeTo(attr, 4), { description: 'set numvfs' });
    assert.equal(await readFile(attr, 'utf8'), '4\n');
    assert.deepEqual(await sudoCommands(), [`/usr/bin/tee ${attr}`]);
  });

  test('the restriction is real: a shell, an unlisted command and a plain redirection into a root-owned file are refused', async () => {
    await sudoCommands();
    const target = join(work, 'root-only');
    await writeFile(target, 'x\n', { mode: 0o644 });
    for (const [what, script] of [
      ['sudo sh -c', sh`/usr/bin/sudo -n /bin/sh -c id`],
      ['sudo id', sh`/usr/bin/sudo -n /usr/bin/id`],
      ['sudo bash', sh`/usr/bin/sudo -n /bin/bash -c id`],
      ['redirection', sh`printf y > ${target}`],
    ] as const) {
      const err = await host.run(script, { description: what }).then(
        () => undefined,
        (e: unknown) => e,
      );
      assert.ok(err instanceof CommandFailedError, `${what}: ${String(err)}`);
      assert.match(String(err.context.stderr), what === 'redirection' ? /Permission denied/ : /password is required|not allowed/, what);
    }
    assert.equal(await readFile(target, 'utf8'), 'x\n');
    assert.deepEqual(await sudoLogged(), { ran: [], refused: ['/bin/sh -c id', '/usr/bin/id', '/bin/bash -c id'] }, 'sudo ran nothing, refused each');
  });
});
