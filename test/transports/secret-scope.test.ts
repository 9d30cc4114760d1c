/**
 * The worker's secret scope (src/transports/secret-scope.ts) on real files: env-var names outside the prefix,
 * paths outside the credentials directory (`..`, absolute, a symlink out, /proc, /dev/zero), FIFOs, group- or
 * world-readable keys, foreign owners, oversize files, the worker's own codec key file — all refused, naming
 * the field and never what the reference holds. And the refusal comes before any connection: a real sshd and a
 * pinned HTTPS server see nothing.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer as createHttpsServer, type Server } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CredentialUnavailableError, InvalidSpecError } from '../../src/common/errors';
import { parseServerSpec } from '../../src/spec/validate';
import { HttpClient } from '../../src/transports/http';
import { resolveAuth } from '../../src/transports/ssh-auth';
import {
  assertSecretScope,
  checkScopeAtStart,
  lexicalScopeProblems,
  MAX_SECRET_BYTES,
  readScopedEnv,
  readScopedFile,
  SecretScopeConfigError,
  secretScopeFromEnv,
  type SecretScope,
} from '../../src/transports/secret-scope';
import { SshSession } from '../../src/transports/ssh';
import { readFile } from 'node:fs/promises';
import { makeCertificate } from '../helpers/sushy';
import { startSshd, type Sshd } from '../helpers/sshd';

const root = mkdtempSync(join(tmpdir(), 'underlay-scope-'));
const dir = join(root, 'credentials');
const outside = join(root, 'elsewhere');
mkdirSync(dir, { mode: 0o700 });
mkdirSync(outside, { mode: 0o700 });
const SECRET = `s3cret-${randomBytes(9).toString('base64url')}`;
const env: Record<string, string> = {
  UNDERLAY_CREDENTIALS_DIR: dir,
  UNDERLAY_SECRET_BMC_PASSWORD: SECRET,
  UNDERLAY_CODEC_KEY: SECRET,
  OTHER_SITE_PASSWORD: SECRET,
};
const scope: SecretScope = secretScopeFromEnv(env);
const ctx = { host: 'kvm-01', field: 'management.credentials.privateKeyFile' };
const secretFile = (name: string, content = SECRET, mode = 0o600) => {
  const p = join(dir, name);
  writeFileSync(p, content, { mode });
  chmodSync(p, mode);
  return p;
};
const read = (path: string) => readScopedFile(path, { kind: 'secret', what: 'private key file' }, ctx, scope);

after(() => rmSync(root, { recursive: true, force: true }));

/** The error names the field and never the secret itself. */
function refused(fn: () => unknown, type: new (...a: never[]) => Error, pattern: RegExp, field = ctx.field): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof type, `${String(e)} is not a ${type.name}`);
    assert.match(e.message, pattern);
    assert.ok(e.message.includes(field), `names the field: ${e.message}`);
    assert.ok(!e.message.includes(SECRET), 'the secret is not in the message');
    assert.equal((e as { retryable?: boolean }).retryable, false);
    return true;
  });
}

describe('the scope itself', () => {
  test('defaults: prefix UNDERLAY_SECRET_, directory /etc/underlay/credentials', () => {
    const s = secretScopeFromEnv({});
    assert.equal(s.envPrefix, 'UNDERLAY_SECRET_');
    assert.equal(s.credentialsDir, '/etc/underlay/credentials');
  });

  test('a prefix overlapping the worker’s own settings, or a broad directory, is a configuration error', () => {
    for (const prefix of ['UNDERLAY_', 'UNDERLAY_CODEC_', 'UNDERLAY_CODEC_KEY_', 'TEMPORAL_', 'TEMPORAL_TLS_']) {
      assert.throws(() => secretScopeFromEnv({ UNDERLAY_SECRET_ENV_PREFIX: prefix }), SecretScopeConfigError, prefix);
    }
    for (const prefix of ['X', 'lower_', 'NO_TRAILING', 'A B_'])
      assert.throws(() => secretScopeFromEnv({ UNDERLAY_SECRET_ENV_PREFIX: prefix }), /expected 4–64/);
    assert.equal(secretScopeFromEnv({ UNDERLAY_SECRET_ENV_PREFIX: 'SITE_A_SECRET_' }).envPrefix, 'SITE_A_SECRET_');
    for (const d of ['/', '/proc', '/dev/shm', 'relative/dir'])
      assert.throws(() => secretScopeFromEnv({ UNDERLAY_CREDENTIALS_DIR: d }), SecretScopeConfigError, d);
  });

  test('at worker start: a codec key file inside the credentials directory, or a world-writable directory, stops it', () => {
    const keys = secretFile('codec.keys', `k1 ${randomBytes(32).toString('base64')}\n`);
    assert.throws(() => checkScopeAtStart(secretScopeFromEnv({ ...env, UNDERLAY_CODEC_KEYS_FILE: keys })), /UNDERLAY_CODEC_KEYS_FILE points inside/);
    const keysOutside = join(outside, 'codec.keys');
    writeFileSync(keysOutside, 'x', { mode: 0o600 });
    assert.deepEqual(checkScopeAtStart(secretScopeFromEnv({ ...env, UNDERLAY_CODEC_KEYS_FILE: keysOutside })), []);
    const open = join(root, 'open');
    mkdirSync(open);
    chmodSync(open, 0o777);
    assert.throws(() => checkScopeAtStart(secretScopeFromEnv({ UNDERLAY_CREDENTIALS_DIR: open })), /writable by everyone/);
    assert.match(checkScopeAtStart(secretScopeFromEnv({ UNDERLAY_CREDENTIALS_DIR: join(root, 'absent') })).join(), /does not exist/);
  });
});

describe('env-var references', () => {
  test('a prefixed variable is read; any other is refused naming the field and the variable, never the value', () => {
    assert.equal(readScopedEnv('UNDERLAY_SECRET_BMC_PASSWORD', 'password', ctx, scope), SECRET);
    refused(() => readScopedEnv('OTHER_SITE_PASSWORD', 'password', ctx, scope), InvalidSpecError, /\$OTHER_SITE_PASSWORD is outside the worker's secret scope/);
    refused(() => readScopedEnv('UNDERLAY_CODEC_KEY', 'password', ctx, scope), InvalidSpecError, /\$UNDERLAY_CODEC_KEY is one of the worker's own settings/);
    refused(() => readScopedEnv('TEMPORAL_API_KEY', 'password', ctx, scope), InvalidSpecError, /one of the worker's own settings/);
    refused(() => readScopedEnv('UNDERLAY_SECRET_', 'password', ctx, scope), InvalidSpecError, /must start with UNDERLAY_SECRET_/);
    refused(
      () => readScopedEnv('UNDERLAY_SECRET_UNSET', 'password', ctx, scope),
      CredentialUnavailableError,
      /\$UNDERLAY_SECRET_UNSET \(password\) is not set/,
    );
  });

  test('the agent socket may come from SSH_AUTH_SOCK or a prefixed variable, and its value is never echoed', async () => {
    assert.equal(readScopedEnv('SSH_AUTH_SOCK', 'agent', ctx, { ...scope, env: { SSH_AUTH_SOCK: '/x.sock' } }, true), '/x.sock');
    refused(() => readScopedEnv('SSH_AUTH_SOCK', 'password', ctx, scope), InvalidSpecError, /outside/); // not for a password
    // A prefixed variable holding a password, named as the agent socket: the failure does not print it.
    await assert.rejects(
      resolveAuth({ agent: true, agentSocketEnv: 'UNDERLAY_SECRET_BMC_PASSWORD' }, 'root', 'kvm-01', scope),
      (e: unknown) => e instanceof CredentialUnavailableError && /named by \$UNDERLAY_SECRET_BMC_PASSWORD/.test(e.message) && !e.message.includes(SECRET),
    );
    await assert.rejects(resolveAuth({ agent: true, agentSocketEnv: 'UNDERLAY_CODEC_KEY' }, 'root', 'kvm-01', scope), InvalidSpecError);
  });
});

describe('file references', () => {
  test('an owner-only regular file inside the directory is read, by absolute or relative path', () => {
    secretFile('key-a');
    mkdirSync(join(dir, 'site-a'), { recursive: true });
    secretFile('site-a/key-b', 'B');
    assert.equal(read(join(dir, 'key-a')).toString(), SECRET);
    assert.equal(read('key-a').toString(), SECRET);
    assert.equal(read('site-a/key-b').toString(), 'B');
    symlinkSync(join(dir, 'key-a'), join(dir, 'link-inside'));
    assert.equal(read('link-inside').toString(), SECRET, 'a symlink that stays inside is followed');
  });

  test('outside the directory: absolute, "..", a symlink out, /proc, /dev — refused before the file is opened', () => {
    const victim = join(outside, 'other-site.key');
    writeFileSync(victim, SECRET, { mode: 0o600 });
    refused(() => read(victim), InvalidSpecError, /is outside the worker's credentials directory/);
    refused(() => read('../elsewhere/other-site.key'), InvalidSpecError, /has a "\." or "\.\." segment/);
    refused(() => read(`${dir}/../elsewhere/other-site.key`), InvalidSpecError, /"\." or "\.\." segment/);
    refused(() => read('./key-a'), InvalidSpecError, /"\." or "\.\." segment/);
    symlinkSync(victim, join(dir, 'link-out'));
    refused(() => read('link-out'), InvalidSpecError, /resolves \(through a symbolic link\) outside/);
    symlinkSync('/dev/zero', join(dir, 'zero'));
    refused(() => read('zero'), InvalidSpecError, /resolves \(through a symbolic link\) outside/);
    symlinkSync(outside, join(dir, 'dir-out'));
    refused(() => read('dir-out/other-site.key'), InvalidSpecError, /resolves \(through a symbolic link\) outside/);
    for (const p of ['/proc/self/environ', '/dev/zero', '/sys/kernel/notes', '/etc/shadow']) refused(() => read(p), InvalidSpecError, /outside|under \/proc/);
  });

  test('not a regular file, too large, group/world-readable, foreign owner: refused, and a FIFO does not block', (t) => {
    execFileSync('mkfifo', [join(dir, 'fifo')]);
    refused(() => read('fifo'), InvalidSpecError, /fifo is not a regular file/); // returns at once (O_NONBLOCK)
    mkdirSync(join(dir, 'a-dir'));
    refused(() => read('a-dir'), InvalidSpecError, /not a regular file/);
    secretFile('big', 'x'.repeat(MAX_SECRET_BYTES + 1));
    refused(() => read('big'), InvalidSpecError, new RegExp(`${MAX_SECRET_BYTES + 1} bytes, over the limit of ${MAX_SECRET_BYTES}`));
    secretFile('exactly', 'x'.repeat(MAX_SECRET_BYTES));
    assert.equal(read('exactly').length, MAX_SECRET_BYTES);
    secretFile('group', SECRET, 0o640);
    refused(() => read('group'), CredentialUnavailableError, /accessible by group or others \(mode 0640\).*chmod 600/);
    secretFile('world', SECRET, 0o604);
    refused(() => read('world'), CredentialUnavailableError, /mode 0604/);
    // A certificate is public: its mode is not checked, its size cap is larger.
    assert.equal(readScopedFile('world', { kind: 'certificate', what: 'CA file' }, ctx, scope).toString(), SECRET);
    if (process.getuid?.() !== 0) {
      t.diagnostic('not root: the foreign-owner case needs chown');
      return;
    }
    secretFile('foreign');
    chownSync(join(dir, 'foreign'), 65534, 65534);
    refused(() => read('foreign'), CredentialUnavailableError, /owned by uid 65534/);
  });

  test('the worker’s own codec key file is never a credential, even inside the directory', () => {
    const keys = secretFile('codec-inside.keys', `k1 ${randomBytes(32).toString('base64')}\n`);
    const s = secretScopeFromEnv({ ...env, UNDERLAY_CODEC_KEYS_FILE: keys });
    refused(
      () => readScopedFile('codec-inside.keys', { kind: 'secret', what: 'credential file' }, ctx, s),
      InvalidSpecError,
      /file of UNDERLAY_CODEC_KEYS_FILE/,
    );
  });
});

/** The rest of an ESXi hypervisor section: the installer on the worker, and the host's files in the scope. */
const ESXI_REST = {
  installer: { iso: '/isos/esxi.iso', sha256: 'a'.repeat(64), version: '8.0.3' },
  rootPassword: { file: 'root' },
  hostCertificate: { certFile: 'esx.crt', keyFile: 'esx.key', fingerprint: `sha256/${'A'.repeat(43)}=` },
};

describe('a whole spec, before any connection', () => {
  const spec = (over: Record<string, unknown>) =>
    parseServerSpec({
      id: 'esx-01',
      site: 's',
      rack: 'r',
      management: { address: '192.0.2.10', hostKey: `SHA256:${'A'.repeat(43)}`, credentials: { privateKeyFile: 'key-a' } },
      nics: [{ name: 'vmnic0' }, { name: 'vmnic1' }],
      hypervisor: {
        kind: 'esxi',
        bmc: {
          address: '192.0.2.20',
          credentials: { usernameEnv: 'UNDERLAY_SECRET_BMC_USER', passwordEnv: 'UNDERLAY_SECRET_BMC_PASSWORD' },
          tls: { caFile: 'ca.pem' },
        },
        ...ESXI_REST,
      },
      attach: {
        kind: 'vds',
        vcenter: { address: '192.0.2.40', credentials: { file: 'vc.cred' }, caFile: 'ca.pem' },
        datacenter: 'dc',
        migrateVmk: 'vmk0',
        switch: 'dvs',
        portgroup: 'pg',
        uplinks: ['vmnic0', 'vmnic1'],
      },
      ...over,
    });

  test('every field outside the scope is listed in one error; a spec inside it passes', () => {
    assertSecretScope(spec({}), scope);
    const bad = spec({
      management: { address: '192.0.2.10', hostKey: `SHA256:${'A'.repeat(43)}`, credentials: { privateKeyFile: join(outside, 'k') } },
      hypervisor: {
        kind: 'esxi',
        bmc: { address: '192.0.2.20', credentials: { usernameEnv: 'UNDERLAY_SECRET_BMC_USER', passwordEnv: 'UNDERLAY_CODEC_KEY' }, tls: { caFile: 'zero' } },
        ...ESXI_REST,
        rootPassword: { file: join(outside, 'root') },
      },
    });
    assert.throws(
      () => assertSecretScope(bad, scope),
      (e: unknown) => {
        assert.ok(e instanceof InvalidSpecError && !e.retryable);
        assert.deepEqual(e.issues.map((i) => i.path).sort(), [
          'hypervisor.bmc.credentials.passwordEnv',
          'hypervisor.bmc.tls.caFile',
          'hypervisor.rootPassword.file',
          'management.credentials.privateKeyFile',
        ]);
        assert.ok(!e.message.includes(SECRET));
        return true;
      },
    );
    // The CLI's view (another machine, maybe): the same fields by text alone, as warnings.
    assert.deepEqual(
      lexicalScopeProblems(bad, scope).map((p) => p.path),
      ['management.credentials.privateKeyFile', 'hypervisor.bmc.credentials.passwordEnv', 'hypervisor.rootPassword.file'],
    );
  });

  test('vCenter without a CA file is not a valid spec: no publicly trusted fallback', () => {
    assert.throws(
      () =>
        spec({
          attach: { kind: 'vds', vcenter: { address: '192.0.2.40', credentials: { file: 'vc.cred' } }, switch: 'd', portgroup: 'p', uplinks: ['vmnic0'] },
        }),
      (e: unknown) => e instanceof InvalidSpecError && e.issues.some((i) => i.path === 'attach.vcenter.caFile'),
    );
  });

  describe('against real peers', () => {
    let sshd: Sshd;
    let https: Server;
    let httpsPort = 0;
    const seen: string[] = [];
    before(async () => {
      sshd = await startSshd();
      const cert = await makeCertificate(outside, 'pinned');
      const [c, k] = await Promise.all([readFile(cert.certFile), readFile(cert.keyFile)]);
      https = createHttpsServer({ cert: c, key: k }, (req, res) => {
        seen.push(`${req.method} ${req.url} ${req.headers.authorization ?? ''}`);
        res.writeHead(200, { 'Content-Type': 'application/json' }).end('{}');
      });
      await new Promise<void>((r) => https.listen(0, '127.0.0.1', r));
      httpsPort = (https.address() as { port: number }).port;
      writeFileSync(join(dir, 'pinned.crt'), await readFile(cert.certFile), { mode: 0o644 });
      Object.assign(process.env, { UNDERLAY_SECRET_TEST_BMC_USER: 'admin', UNDERLAY_CODEC_KEY_PROBE: SECRET });
    });
    after(async () => {
      await sshd?.stop();
      https?.closeAllConnections();
      await new Promise<void>((r) => (https ? https.close(() => r()) : r()));
      delete process.env.UNDERLAY_SECRET_TEST_BMC_USER;
      delete process.env.UNDERLAY_CODEC_KEY_PROBE;
    });

    test('a pinned HTTPS server never receives a worker setting named as a BMC password', async () => {
      // The issue's reproduction: `passwordEnv: UNDERLAY_CODEC_KEY…` with a server the spec pins. Refused at open.
      const saved = process.env.UNDERLAY_CREDENTIALS_DIR;
      process.env.UNDERLAY_CREDENTIALS_DIR = dir; // where pinned.crt is
      try {
        await assert.rejects(
          HttpClient.open({
            host: '127.0.0.1',
            port: httpsPort,
            tls: { caFile: 'pinned.crt' },
            credentials: { usernameEnv: 'UNDERLAY_SECRET_TEST_BMC_USER', passwordEnv: 'UNDERLAY_CODEC_KEY_PROBE' },
            label: 'esx-01',
          }),
          (e: unknown) => e instanceof InvalidSpecError && /credentials\.passwordEnv/.test(e.message) && !e.message.includes(SECRET),
        );
      } finally {
        process.env.UNDERLAY_CREDENTIALS_DIR = saved;
      }
      await new Promise((r) => setTimeout(r, 200));
      assert.deepEqual(seen, [], 'no request reached the server');
    });

    test('an SSH key outside the credentials directory: refused before the TCP connection', async () => {
      // sshd's user key lives in this process's test credentials directory (test/helpers/credentials.ts). Under a
      // scope that does not contain it, connect refuses before opening a socket: sshd logs nothing.
      const saved = process.env.UNDERLAY_CREDENTIALS_DIR;
      process.env.UNDERLAY_CREDENTIALS_DIR = dir;
      const n0 = sshd.log().length;
      try {
        await assert.rejects(
          SshSession.connect(sshd.target()),
          (e: unknown) => e instanceof InvalidSpecError && /privateKeyFile: \S+ is outside the worker's credentials directory/.test(e.message),
        );
        await new Promise((r) => setTimeout(r, 300));
        assert.equal(sshd.log().slice(n0).trim(), '', 'sshd saw no connection');
      } finally {
        process.env.UNDERLAY_CREDENTIALS_DIR = saved;
      }
      // Control: the same target under the scope that holds the key connects, and sshd's log shows it.
      const session = await SshSession.connect(sshd.target());
      session.close();
      await new Promise((r) => setTimeout(r, 300));
      assert.match(sshd.log().slice(n0), /Accepted publickey/);
    });
  });
});
