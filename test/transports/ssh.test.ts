/**
 * SSH transport against a real OpenSSH sshd on 127.0.0.1 (see test/helpers/sshd.ts). No mocks of ssh2.
 * Run: node --import tsx --test test/transports/ssh.test.ts
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { readFile, writeFile, stat, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { inspect, promisify } from 'node:util';
import {
  AuthenticationError,
  CommandFailedError,
  CommandTimeoutError,
  ConnectionError,
  CredentialUnavailableError,
  HostKeyMismatchError,
  InvalidSpecError,
} from '../../src/common/errors';
import { MAX_CAPTURE_BYTES, SshSession, sha256Fingerprint, withSsh } from '../../src/transports/ssh';
import { observeCommands, RemoteHost, type CommandRecord } from '../../src/drivers/remote';
import { sh } from '../../src/drivers/shell';
import { credentialsSubdir } from '../helpers/credentials';
import { freePort, generateKey, keygenFingerprint, sleep, startSshd, type Sshd } from '../helpers/sshd';

const execFileP = promisify(execFile);

/** Everything an error could leak through: message, stack, JSON, and a deep inspect including hidden fields. */
function dump(err: unknown): string {
  let json = '';
  try {
    json = JSON.stringify(err);
  } catch {
    json = '';
  }
  return [String(err), (err as Error)?.stack ?? '', json, inspect(err, { depth: 20, showHidden: true })].join('\n');
}

/** Asserts no secret — nor any 16-char slice of one — shows up in the error. */
function assertNoSecret(err: unknown, secrets: string[]): void {
  const text = dump(err);
  for (const secret of secrets) {
    for (const line of secret.split('\n').map((l) => l.trim())) {
      if (line.length < 16 || line.startsWith('-----')) continue;
      for (let i = 0; i + 16 <= line.length; i += 8) {
        assert.ok(!text.includes(line.slice(i, i + 16)), `error leaks secret material: ${line.slice(i, i + 16)}`);
      }
    }
  }
}

async function rejectsWith<E extends Error>(p: Promise<unknown>, cls: new (...a: never[]) => E): Promise<E> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof cls, `expected ${cls.name}, got ${dump(e)}`);
    return e;
  }
  assert.fail(`expected ${cls.name}, but it resolved`);
}

/** Sets env vars for the duration of fn, restoring previous values. */
async function withEnv<T>(vars: Record<string, string | undefined>, fn: () => Promise<T>): Promise<T> {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  const apply = (v: Record<string, string | undefined>): void => {
    for (const [k, val] of Object.entries(v)) {
      if (val === undefined) delete process.env[k];
      else process.env[k] = val;
    }
  };
  apply(vars);
  try {
    return await fn();
  } finally {
    apply(saved);
  }
}

function acceptedLogins(sshd: Sshd): number {
  return sshd
    .log()
    .split('\n')
    .filter((l) => l.startsWith('Accepted publickey')).length;
}

let sshd: Sshd;
let work: string; // scratch folder for extra keys

before(async () => {
  sshd = await startSshd();
  work = await credentialsSubdir('ssh-test-'); // keys are credentials: inside the worker's scope
});

after(async () => {
  await sshd?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

describe('sha256Fingerprint', () => {
  test('matches ssh-keygen -lf for ed25519 and rsa keys', async () => {
    const ed = await generateKey(work, 'fp_ed25519');
    const rsaPath = join(work, 'fp_rsa');
    await execFileP('ssh-keygen', ['-q', '-t', 'rsa', '-b', '2048', '-N', '', '-f', rsaPath]);
    for (const pubPath of [`${ed.privateKeyPath}.pub`, `${rsaPath}.pub`]) {
      const blob = Buffer.from((await readFile(pubPath, 'utf8')).split(' ')[1]!, 'base64');
      const fp = sha256Fingerprint(blob);
      assert.match(fp, /^SHA256:[A-Za-z0-9+/]{43}$/);
      assert.equal(fp, await keygenFingerprint(pubPath));
    }
  });
});

describe('SshSession against a real sshd', () => {
  let session: SshSession;
  before(async () => {
    session = await SshSession.connect(sshd.target());
  });
  after(() => session?.close());

  test('runs commands and returns stdout', async () => {
    const r = await session.exec('echo hello; id -un');
    assert.equal(r.stdout, `hello\n${sshd.user}\n`);
    assert.equal(r.stderr, '');
    assert.equal(r.exitCode, 0);
    // Sequential reuse of the same connection.
    assert.equal((await session.exec('printf %s abc')).stdout, 'abc');
  });

  test('exec reports non-zero exit codes with stdout and stderr', async () => {
    const r = await session.exec('echo out; echo err >&2; exit 3');
    assert.deepEqual([r.exitCode, r.signal, r.stdout, r.stderr], [3, null, 'out\n', 'err\n']);
  });

  test('exec reports a command killed by a signal', async () => {
    const r = await session.exec('kill -KILL $$');
    assert.equal(r.exitCode, null);
    assert.equal(r.signal, 'SIGKILL'); // ssh2 reports exit-signal names with the SIG prefix
  });

  test('the one command runner (RemoteHost.runLine) over a session: exit codes and signals → CommandFailedError; okExitCodes, retryable', async () => {
    const host = new RemoteHost(session, 'test-server', false, 'bond');
    const err = await rejectsWith(host.runLine({ text: 'echo boom >&2; exit 4' }, { description: 'probe thing' }), CommandFailedError);
    assert.equal(err.context.exitCode, 4);
    assert.equal(err.context.host, 'test-server');
    assert.equal(err.context.step, 'bond');
    assert.equal(err.context.command, 'probe thing');
    assert.match(err.context.stderr ?? '', /boom/);
    assert.equal(err.retryable, true);
    assert.match(err.message, /host test-server.*exit code 4.*stderr: boom/);

    const err2 = await rejectsWith(host.runLine({ text: 'exit 1' }, { description: 'final thing', retryable: false }), CommandFailedError);
    assert.equal(err2.retryable, false);
    const killed = await rejectsWith(host.runLine({ text: 'kill -KILL $$' }, { description: 'suicide' }), CommandFailedError);
    assert.match(killed.message, /suicide was killed by SIGKILL/);

    const ok = await host.runLine({ text: 'exit 3' }, { description: 'answer 3', okExitCodes: [0, 3] });
    assert.equal(ok.exitCode, 3);
    // POSIX scripts: the host-side deadline (coreutils timeout) is a CommandTimeoutError, not a failure.
    await rejectsWith(host.run(sh`sleep 30`, { description: 'nap', timeoutMs: 1_000, privileged: false }), CommandTimeoutError);
  });

  test('a command observer sees every answered command (host, step, description, time, exit), a throwing one fails nothing', async () => {
    const seen: CommandRecord[] = [];
    const stop = observeCommands((r) => seen.push(r));
    const stopBad = observeCommands(() => {
      throw new Error('observer bug');
    });
    try {
      const host = new RemoteHost(session, 'test-server', false, 'vlan');
      await host.run(sh`sleep 0.3; echo hi`, { description: 'nap then greet', privileged: false });
      await rejectsWith(host.runLine({ text: 'exit 2' }, { description: 'fails' }), CommandFailedError);
    } finally {
      stop();
      stopBad();
    }
    assert.deepEqual(
      seen.map(({ host, step, description, exitCode }) => ({ host, step, description, exitCode })),
      [
        { host: 'test-server', step: 'vlan', description: 'nap then greet', exitCode: 0 },
        { host: 'test-server', step: 'vlan', description: 'fails', exitCode: 2 },
      ],
    );
    assert.ok(seen[0]!.ms >= 300, `${seen[0]!.ms} ms`);
    await new RemoteHost(session, 'test-server', false).runLine({ text: 'true' }, { description: 'after unsubscribe' });
    assert.equal(seen.length, 2);
  });

  test('stdin is delivered (string and binary Buffer), and stdin is closed when none is given', async () => {
    assert.equal((await session.exec('cat', { stdin: 'line1\nline2\n' })).stdout, 'line1\nline2\n');
    const bin = Buffer.alloc(200_000, 0xab);
    assert.equal((await session.exec('wc -c', { stdin: bin })).stdout.trim(), '200000');
    // Would hang until the timeout if we didn't send EOF.
    assert.equal((await session.exec('cat; echo eof', { timeoutMs: 5000 })).stdout, 'eof\n');
  });

  test('onData streams decoded output', async () => {
    const seen: Array<[string, string]> = [];
    const r = await session.exec('printf "é1"; printf "ü2" >&2', { onData: (c, s) => seen.push([s, c]) });
    assert.equal(
      seen
        .filter(([s]) => s === 'stdout')
        .map(([, c]) => c)
        .join(''),
      'é1',
    );
    assert.equal(
      seen
        .filter(([s]) => s === 'stderr')
        .map(([, c]) => c)
        .join(''),
      'ü2',
    );
    assert.equal(r.stdout, 'é1');
  });

  test('runs concurrent commands over one connection', async () => {
    // A barrier rather than a stopwatch: each command waits (bounded) until all N have started, so the test
    // passes only if all N channels run at once, however slow the machine is.
    const n = 12;
    const barrier = join(sshd.dir, 'barrier');
    await session.exec(`mkdir -p ${barrier}`);
    const cmd = (i: number): string =>
      // `set -- dir/*` counts the files without forking, keeping the poll loop cheap.
      `touch ${barrier}/${i}; for t in $(seq 200); do set -- ${barrier}/*; [ $# -ge ${n} ] && break; sleep 0.05; done; set -- ${barrier}/*; echo ${i} $#`;
    const results = await Promise.all(Array.from({ length: n }, (_, i) => session.exec(cmd(i), { timeoutMs: 30_000 })));
    assert.deepEqual(
      results.map((r) => r.stdout),
      Array.from({ length: n }, (_, i) => `${i} ${n}\n`),
    );
  });

  test('caps captured output (stdout keeps the head, stderr the tail)', async () => {
    const r = await session.exec(`head -c ${MAX_CAPTURE_BYTES + 100_000} /dev/zero | tr '\\0' a; yes e | head -c 5000000 >&2; echo END >&2`);
    assert.equal(r.stdout.length, MAX_CAPTURE_BYTES);
    assert.equal(r.stdoutTruncated, true);
    assert.equal(r.stderr.length, MAX_CAPTURE_BYTES);
    assert.equal(r.stderrTruncated, true);
    assert.ok(r.stderr.endsWith('END\n'));
  });

  test('a hung command times out quickly with CommandTimeoutError and the session stays usable', async () => {
    let pid = 0;
    const t0 = Date.now();
    try {
      const err = await rejectsWith(
        session.exec('echo $$; exec sleep 60', {
          timeoutMs: 1000,
          description: 'hang',
          onData: (c, s) => {
            if (s === 'stdout') pid = Number(c.trim());
          },
        }),
        CommandTimeoutError,
      );
      const elapsed = Date.now() - t0;
      assert.ok(elapsed >= 950 && elapsed < 3000, `timeout took ${elapsed} ms`);
      assert.equal(err.retryable, true);
      assert.equal(err.context.command, 'hang');
      assert.equal(session.closed, false);
      assert.equal((await session.exec('echo still-here')).stdout, 'still-here\n');

      // The KILL request really reached sshd: either the process is gone, or sshd logged why it refused
      // (OpenSSH refuses signals for root sessions: "session signalling requires privilege separation").
      assert.ok(pid > 0, 'command pid not captured');
      const deadline = Date.now() + 2000;
      let alive = true;
      let refused = false;
      for (let i = 0; i < 40 && Date.now() < deadline && alive && !refused; i++) {
        alive = await stat(`/proc/${pid}`).then(
          () => true,
          () => false,
        );
        refused = sshd.log().includes('session_signal_req');
        if (alive && !refused) await sleep(50);
      }
      assert.ok(!alive || refused, 'neither killed nor a signal request logged by sshd');
    } finally {
      // sshd ignores signals for root sessions, so the remote `sleep` (ours: same machine) may still be running.
      if (pid > 0) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* already gone */
        }
      }
    }
  });
});

describe('connection lifecycle', () => {
  test('a connection that drops while a command runs → ConnectionError', async () => {
    const s = await SshSession.connect(sshd.target());
    try {
      // $PPID is the per-connection sshd process: killing it drops the TCP connection with no exit status.
      const err = await rejectsWith(s.exec('sleep 0.2; kill -KILL $PPID', { timeoutMs: 10_000 }), ConnectionError);
      assert.equal(err.retryable, true);
      assert.equal(s.closed, true);
      await rejectsWith(s.exec('true'), ConnectionError);
    } finally {
      s.close();
    }
  });

  test('withSsh always closes the session, also when fn throws', async () => {
    let captured: SshSession | undefined;
    const out = await withSsh(sshd.target(), async (s) => {
      captured = s;
      return (await s.exec('echo via-withSsh')).stdout;
    });
    assert.equal(out, 'via-withSsh\n');
    assert.equal(captured?.closed, true);

    await assert.rejects(
      withSsh(sshd.target(), async (s) => {
        captured = s;
        throw new Error('boom');
      }),
      /boom/,
    );
    assert.equal(captured?.closed, true);
    await rejectsWith(captured.exec('true'), ConnectionError);
  });

  test('connection refused on a closed port → retryable ConnectionError', async () => {
    const port = await freePort();
    const err = await rejectsWith(SshSession.connect(sshd.target({ port })), ConnectionError);
    assert.equal(err.retryable, true);
    assert.match(err.message, /ECONNREFUSED/);
  });

  test('a server that never speaks SSH → ConnectionError after connectTimeoutMs', async () => {
    const sockets = new Set<Socket>();
    const silent: Server = createServer((sock) => {
      sockets.add(sock);
      sock.on('error', () => {});
    });
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    try {
      const addr = silent.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      const t0 = Date.now();
      await rejectsWith(SshSession.connect(sshd.target({ port }), { connectTimeoutMs: 500 }), ConnectionError);
      assert.ok(Date.now() - t0 < 2500, `took ${Date.now() - t0} ms`);
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => silent.close(() => r()));
    }
  });
});

describe('host key pinning', () => {
  test('a wrong pinned fingerprint is refused with HostKeyMismatchError before any auth or command', async () => {
    const other = await generateKey(work, 'not_the_host_key');
    const wrong = await keygenFingerprint(`${other.privateKeyPath}.pub`);
    const loginsBefore = acceptedLogins(sshd);
    let ran = false;
    const err = await rejectsWith(
      withSsh(sshd.target({ hostKey: wrong }), async (s) => {
        ran = true;
        await s.exec('touch /tmp/should-not-exist');
      }),
      HostKeyMismatchError,
    );
    assert.equal(ran, false);
    assert.equal(err.retryable, false);
    assert.equal(err.context.expected, wrong);
    assert.equal(err.context.observed, sshd.hostKeyFingerprint);
    assert.equal(err.context.host, 'test-server');
    await sleep(100);
    assert.equal(acceptedLogins(sshd), loginsBefore, 'sshd accepted a login despite the mismatch');
  });

  test('a malformed pin is rejected before connecting', async () => {
    await rejectsWith(SshSession.connect(sshd.target({ hostKey: 'SHA256:short' })), InvalidSpecError);
  });
});

describe('credentials', () => {
  test('key from privateKeyEnv', async () => {
    const keyText = await readFile(sshd.userKeyPath, 'utf8');
    await withEnv({ UNDERLAY_SECRET_TEST_SSH_KEY: keyText }, async () => {
      const out = await withSsh(
        sshd.target({ credentials: { privateKeyEnv: 'UNDERLAY_SECRET_TEST_SSH_KEY' } }),
        async (s) => (await s.exec('echo env-key')).stdout,
      );
      assert.equal(out, 'env-key\n');
    });
  });

  test('privateKeyEnv unset → CredentialUnavailableError naming the variable', async () => {
    await withEnv({ UNDERLAY_SECRET_TEST_SSH_KEY_UNSET: undefined }, async () => {
      const err = await rejectsWith(
        SshSession.connect(sshd.target({ credentials: { privateKeyEnv: 'UNDERLAY_SECRET_TEST_SSH_KEY_UNSET' } })),
        CredentialUnavailableError,
      );
      assert.match(err.message, /\$UNDERLAY_SECRET_TEST_SSH_KEY_UNSET/);
    });
  });

  test('encrypted key with passphraseEnv; wrong or missing passphrase → CredentialUnavailableError without the secret', async () => {
    const passphrase = 'correct-horse-battery-staple-7f3a9';
    const enc = await generateKey(work, 'encrypted', passphrase, ['-a', '4']);
    await sshd.authorize(enc.publicKey);
    const keyText = await readFile(enc.privateKeyPath, 'utf8');
    const creds = { privateKeyFile: enc.privateKeyPath, passphraseEnv: 'UNDERLAY_SECRET_TEST_PASSPHRASE' };

    await withEnv({ UNDERLAY_SECRET_TEST_PASSPHRASE: passphrase }, async () => {
      const out = await withSsh(sshd.target({ credentials: creds }), async (s) => (await s.exec('echo decrypted')).stdout);
      assert.equal(out, 'decrypted\n');
    });
    const wrongPass = 'wrong-passphrase-0123456789abcdef';
    const wrong = await withEnv({ UNDERLAY_SECRET_TEST_PASSPHRASE: wrongPass }, () =>
      rejectsWith(SshSession.connect(sshd.target({ credentials: creds })), CredentialUnavailableError),
    );
    assert.match(wrong.message, /wrong passphrase in \$UNDERLAY_SECRET_TEST_PASSPHRASE/);
    assertNoSecret(wrong, [keyText, passphrase, wrongPass]);

    const unset = await withEnv({ UNDERLAY_SECRET_TEST_PASSPHRASE: undefined }, () =>
      rejectsWith(SshSession.connect(sshd.target({ credentials: creds })), CredentialUnavailableError),
    );
    assert.match(unset.message, /\$UNDERLAY_SECRET_TEST_PASSPHRASE/);
    const noPassEnv = await rejectsWith(SshSession.connect(sshd.target({ credentials: { privateKeyFile: enc.privateKeyPath } })), CredentialUnavailableError);
    assert.match(noPassEnv.message, /encrypted/);
    assertNoSecret(noPassEnv, [keyText]);
  });

  test('wrong key → AuthenticationError, and it does not leak the key', async () => {
    const stranger = await generateKey(work, 'stranger');
    const keyText = await readFile(stranger.privateKeyPath, 'utf8');
    const err = await rejectsWith(SshSession.connect(sshd.target({ credentials: { privateKeyFile: stranger.privateKeyPath } })), AuthenticationError);
    assert.equal(err.retryable, false);
    assert.match(err.message, new RegExp(`key file ${stranger.privateKeyPath}`));
    assertNoSecret(err, [keyText]);

    await withEnv({ UNDERLAY_SECRET_TEST_SSH_KEY: keyText }, async () => {
      const e2 = await rejectsWith(SshSession.connect(sshd.target({ credentials: { privateKeyEnv: 'UNDERLAY_SECRET_TEST_SSH_KEY' } })), AuthenticationError);
      assertNoSecret(e2, [keyText]);
    });
  });

  test('unreadable or unparseable key file → CredentialUnavailableError naming the path, never the content', async () => {
    const missing = join(work, 'does-not-exist');
    const e1 = await rejectsWith(SshSession.connect(sshd.target({ credentials: { privateKeyFile: missing } })), CredentialUnavailableError);
    assert.match(e1.message, /does-not-exist/);
    assert.equal(e1.retryable, false);

    // A directory is not a key file: refused as the spec's mistake (a regular file only), before any connection.
    const e2 = await rejectsWith(SshSession.connect(sshd.target({ credentials: { privateKeyFile: work } })), InvalidSpecError);
    assert.match(e2.message, /not a regular file/);

    // Looks like a key, but is corrupt: the parser fails and must not echo any of it back.
    const real = await readFile(sshd.userKeyPath, 'utf8');
    const lines = real.trim().split('\n');
    const corrupt = [lines[0], 'U0VDUkVULU1BVEVSSUFMLWRvLW5vdC1sZWFrLTEyMzQ1Njc4OTA=', ...lines.slice(1, -2), lines.at(-1)].join('\n') + '\n';
    const corruptPath = join(work, 'corrupt_key');
    await writeFile(corruptPath, corrupt, { mode: 0o600 });
    const e3 = await rejectsWith(SshSession.connect(sshd.target({ credentials: { privateKeyFile: corruptPath } })), CredentialUnavailableError);
    assert.match(e3.message, /corrupt_key/);
    assertNoSecret(e3, [corrupt, real]);

    // A public key where a private one is expected.
    const e4 = await rejectsWith(SshSession.connect(sshd.target({ credentials: { privateKeyFile: `${sshd.userKeyPath}.pub` } })), CredentialUnavailableError);
    assert.match(e4.message, /id_user\.pub/);
  });

  describe('ssh-agent', () => {
    let agent: ChildProcess | undefined;
    let sock = '';
    before(async () => {
      sock = join(work, 'agent.sock');
      // -D: stay in the foreground so this process owns it and can stop it by pid.
      agent = spawn('ssh-agent', ['-D', '-a', sock], { stdio: 'ignore' });
      const deadline = Date.now() + 5000;
      for (let i = 0; i < 100 && Date.now() < deadline; i++) {
        if (
          await stat(sock).then(
            (s) => s.isSocket(),
            () => false,
          )
        )
          break;
        await sleep(50);
      }
      await execFileP('ssh-add', ['-q', sshd.userKeyPath], { env: { ...process.env, SSH_AUTH_SOCK: sock }, timeout: 5000 });
    });
    after(async () => {
      if (agent && agent.exitCode === null && agent.signalCode === null) {
        const gone = new Promise((r) => agent!.once('exit', r));
        agent.kill('SIGTERM');
        await Promise.race([gone, sleep(2000)]);
      }
    });

    test('agent auth via agentSocketEnv and via SSH_AUTH_SOCK', async () => {
      await withEnv({ UNDERLAY_SECRET_TEST_AGENT_SOCK: sock }, async () => {
        const out = await withSsh(
          sshd.target({ credentials: { agent: true, agentSocketEnv: 'UNDERLAY_SECRET_TEST_AGENT_SOCK' } }),
          async (s) => (await s.exec('echo agent')).stdout,
        );
        assert.equal(out, 'agent\n');
      });
      await withEnv({ SSH_AUTH_SOCK: sock }, async () => {
        const out = await withSsh(sshd.target({ credentials: { agent: true } }), async (s) => (await s.exec('echo default-sock')).stdout);
        assert.equal(out, 'default-sock\n');
      });
    });

    test('agent socket env unset or stale → CredentialUnavailableError', async () => {
      await withEnv({ UNDERLAY_SECRET_TEST_AGENT_SOCK: undefined }, async () => {
        const e = await rejectsWith(
          SshSession.connect(sshd.target({ credentials: { agent: true, agentSocketEnv: 'UNDERLAY_SECRET_TEST_AGENT_SOCK' } })),
          CredentialUnavailableError,
        );
        assert.match(e.message, /\$UNDERLAY_SECRET_TEST_AGENT_SOCK/);
      });
      await withEnv({ UNDERLAY_SECRET_TEST_AGENT_SOCK: join(work, 'no-such.sock') }, async () => {
        await rejectsWith(
          SshSession.connect(sshd.target({ credentials: { agent: true, agentSocketEnv: 'UNDERLAY_SECRET_TEST_AGENT_SOCK' } })),
          CredentialUnavailableError,
        );
      });
    });
  });
});
