/**
 * The HTTPS transport against a real Redfish service (sushy-tools' emulator over TLS with basic auth) for trust
 * pinning and authentication, and against a local node HTTPS server for what sushy cannot be made to do on cue
 * (hang, answer 503 then 200, echo a secret in an error body).
 */
import assert from 'node:assert/strict';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpsServer, type Server } from 'node:https';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { AuthenticationError, ConnectionError, CredentialUnavailableError, HostKeyMismatchError, InvalidSpecError } from '../../src/common/errors';
import { HttpClient, HttpStatusError, type HttpTarget } from '../../src/transports/http';
import { excerpt } from '../../src/transports/http-credentials';
import { credentialsSubdir } from '../helpers/credentials';
import { freePort } from '../helpers/sshd';
import { makeCertificate, startSushy, type Sushy } from '../helpers/sushy';

let sushy: Sushy;
let dir: string;
let other: { certFile: string; fingerprint: string };

before(async () => {
  sushy = await startSushy();
  dir = await credentialsSubdir('http-');
  other = await makeCertificate(dir, 'other');
});
after(async () => {
  await sushy?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const target = (over: Partial<HttpTarget> = {}): HttpTarget => ({
  host: '127.0.0.1',
  port: sushy.port,
  tls: { certFile: sushy.certFile, fingerprint: sushy.fingerprint },
  credentials: { file: sushy.credentialFile },
  label: 'esx01',
  ...over,
});

describe('trust', () => {
  test('a pinned certificate fingerprint: GETs with basic auth, logged without secrets', async () => {
    const client = await HttpClient.open(target());
    try {
      const res = await client.get<{ Members: unknown[] }>('/redfish/v1/Systems');
      assert.equal(res.status, 200);
      assert.equal(res.body?.Members.length, 1);
      assert.deepEqual(
        client.log.map((e) => `${e.method} ${e.path} ${e.status}`),
        ['GET /redfish/v1/Systems 200'],
      );
      assert.ok(!JSON.stringify(client.log).includes(sushy.password));
    } finally {
      await client.close();
    }
  });

  test('a CA file: the chain and the host name are checked', async () => {
    const client = await HttpClient.open(target({ tls: { caFile: sushy.certFile } }));
    try {
      assert.equal((await client.get('/redfish/v1/')).status, 200);
    } finally {
      await client.close();
    }
  });

  test('a wrong fingerprint is refused before any request reaches the server', async () => {
    const before = sushy.requests().length;
    // Another certificate pinned: the handshake fails verification against it, so no request is ever sent. The
    // presented certificate cannot be read from a failed verification: `observed` is the TLS error code.
    const client = await HttpClient.open(target({ tls: { certFile: other.certFile, fingerprint: other.fingerprint } }));
    try {
      await assert.rejects(client.get('/redfish/v1/Systems'), (e: unknown) => {
        assert.ok(e instanceof HostKeyMismatchError, String(e));
        assert.equal(e.retryable, false);
        assert.match(e.message, /not the pinned one/);
        assert.equal(e.context.expected, `${other.fingerprint} (${other.certFile})`);
        assert.match(String(e.context.observed), /SELF_SIGNED|CERT/);
        return true;
      });
    } finally {
      await client.close();
    }
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(sushy.requests().length, before, 'no HTTP request was sent');
  });

  test('a certificate file that is not the pinned fingerprint is refused at open, naming both', async () => {
    await assert.rejects(HttpClient.open(target({ tls: { certFile: other.certFile, fingerprint: sushy.fingerprint } })), (e: unknown) => {
      assert.ok(e instanceof InvalidSpecError, String(e));
      assert.equal(e.context.field, 'tls.fingerprint');
      assert.ok(e.message.includes(other.fingerprint) && e.message.includes(sushy.fingerprint), e.message);
      return true;
    });
    await assert.rejects(
      HttpClient.open(target({ tls: { certFile: join(dir, 'missing.pem'), fingerprint: sushy.fingerprint } })),
      /pinned certificate \S*missing\.pem cannot be read \(ENOENT\)/,
    );
  });

  test('a CA file that did not issue the certificate is refused, credentials unsent', async () => {
    const before = sushy.requests().length;
    const client = await HttpClient.open(target({ tls: { caFile: other.certFile } }));
    try {
      await assert.rejects(client.get('/redfish/v1/Systems'), (e: unknown) => e instanceof HostKeyMismatchError && !e.retryable);
    } finally {
      await client.close();
    }
    assert.equal(sushy.requests().length, before);
  });

  test('a malformed pin is a spec error', async () => {
    await assert.rejects(HttpClient.open(target({ tls: { certFile: sushy.certFile, fingerprint: 'sha256/short' } })), InvalidSpecError);
  });
});

describe('credentials and statuses', () => {
  test('credentials from env vars; a wrong password is AuthenticationError that never shows it', async () => {
    process.env.UNDERLAY_SECRET_TEST_BMC_USER = sushy.username;
    process.env.UNDERLAY_SECRET_TEST_BMC_PASS = 'not-the-password-9f3k';
    const client = await HttpClient.open(
      target({ credentials: { usernameEnv: 'UNDERLAY_SECRET_TEST_BMC_USER', passwordEnv: 'UNDERLAY_SECRET_TEST_BMC_PASS' } }),
    );
    try {
      await assert.rejects(client.get('/redfish/v1/Systems'), (e: unknown) => {
        assert.ok(e instanceof AuthenticationError, String(e));
        assert.match(e.message, /HTTP 401/);
        assert.ok(!e.message.includes('not-the-password-9f3k'));
        return true;
      });
      process.env.UNDERLAY_SECRET_TEST_BMC_PASS = sushy.password;
      const ok = await HttpClient.open(target({ credentials: { usernameEnv: 'UNDERLAY_SECRET_TEST_BMC_USER', passwordEnv: 'UNDERLAY_SECRET_TEST_BMC_PASS' } }));
      assert.equal((await ok.get('/redfish/v1/Systems')).status, 200);
      await ok.close();
    } finally {
      await client.close();
      delete process.env.UNDERLAY_SECRET_TEST_BMC_USER;
      delete process.env.UNDERLAY_SECRET_TEST_BMC_PASS;
    }
  });

  test('an unset env var or unreadable file is CredentialUnavailableError naming the reference', async () => {
    await assert.rejects(
      HttpClient.open(target({ credentials: { usernameEnv: 'UNDERLAY_SECRET_TEST_UNSET_U', passwordEnv: 'UNDERLAY_SECRET_TEST_UNSET_P' } })),
      /\$UNDERLAY_SECRET_TEST_UNSET_U/,
    );
    await assert.rejects(
      HttpClient.open(target({ credentials: { file: join(dir, 'absent') } })),
      (e: unknown) => e instanceof CredentialUnavailableError && /ENOENT/.test(e.message),
    );
  });

  test('404 is a non-retryable HttpStatusError with the status and the service’s message', async () => {
    const client = await HttpClient.open(target());
    try {
      await assert.rejects(client.get('/redfish/v1/Systems/no-such-system'), (e: unknown) => {
        assert.ok(e instanceof HttpStatusError, String(e));
        assert.equal(e.status, 404);
        assert.equal(e.retryable, false);
        assert.match(e.message, /GET \/redfish\/v1\/Systems\/no-such-system/);
        assert.ok(e.excerpt.length > 0 && e.excerpt.length <= 301);
        return true;
      });
    } finally {
      await client.close();
    }
  });

  test('a refused connection is a retryable ConnectionError', async () => {
    const port = await freePort();
    const client = await HttpClient.open(target({ port, tls: { caFile: sushy.certFile } }), { getRetries: 0 });
    try {
      await assert.rejects(client.get('/redfish/v1/'), (e: unknown) => e instanceof ConnectionError && e.retryable && /ECONNREFUSED/.test(e.message));
    } finally {
      await client.close();
    }
  });
});

describe('against a local HTTPS server', () => {
  let server: Server;
  let port: number;
  let credFile: string;
  let localCert: { certFile: string; fingerprint: string };
  const secret = 'hunter2-Sekr1t';
  let busyHits = 0;

  before(async () => {
    const cert = await makeCertificate(dir, 'local');
    credFile = join(dir, 'local-creds');
    await writeFile(credFile, `admin\n${secret}\n`, { mode: 0o600 });
    server = createHttpsServer({ cert: await readFile(cert.certFile), key: await readFile(cert.keyFile) }, (req, res) => {
      if (req.url === '/slow') return; // never answers
      if (req.url === '/busy') {
        busyHits++;
        if (busyHits === 1) {
          res.writeHead(503, { 'Retry-After': '1', 'Content-Type': 'application/json' });
          res.end('{"error":{"message":"busy"}}');
        } else {
          res.writeHead(200, { ETag: 'W/"gen-7"', 'Content-Type': 'application/json' });
          res.end('{"ok":true}');
        }
        return;
      }
      if (req.url === '/bad') {
        res.writeHead(400, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ error: { message: `login admin/${secret} rejected` }, Password: secret, 'X-Auth-Token': 'tok123456' }));
        return;
      }
      res.writeHead(500);
      res.end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as { port: number }).port;
    localCert = cert;
  });
  after(() => new Promise<void>((r) => (server.closeAllConnections(), server.close(() => r()))));

  const local = () => target({ port, tls: { certFile: localCert.certFile, fingerprint: localCert.fingerprint }, credentials: { file: credFile } });

  test('a request that gets no answer times out as a retryable ConnectionError', async () => {
    const client = await HttpClient.open(local(), { timeoutMs: 400, getRetries: 0 });
    const t0 = Date.now();
    try {
      await assert.rejects(client.get('/slow'), (e: unknown) => e instanceof ConnectionError && /within 400 ms/.test(e.message));
    } finally {
      await client.close();
    }
    assert.ok(Date.now() - t0 < 3000);
  });

  test('GET retries a 503 after its Retry-After, and captures the ETag', async () => {
    const client = await HttpClient.open(local());
    const t0 = Date.now();
    try {
      const res = await client.get('/busy');
      assert.equal(res.status, 200);
      assert.equal(res.etag, 'W/"gen-7"');
      assert.equal(busyHits, 2);
      assert.ok(Date.now() - t0 >= 900, 'waited for Retry-After: 1');
      assert.deepEqual(
        client.log.map((e) => `${e.status} ${e.error ?? ''}`.trim()),
        ['503 HttpStatusError', '200'],
      );
    } finally {
      await client.close();
    }
  });

  test('a 400 is final, and its excerpt has the secrets redacted', async () => {
    const client = await HttpClient.open(local());
    try {
      await assert.rejects(client.request('POST', '/bad', { body: {} }), (e: unknown) => {
        assert.ok(e instanceof HttpStatusError);
        assert.equal(e.status, 400);
        assert.equal(e.retryable, false);
        assert.ok(!e.message.includes(secret), e.message);
        assert.ok(!e.excerpt.includes(secret));
        assert.match(e.excerpt, /\*\*\*/);
        return true;
      });
    } finally {
      await client.close();
    }
    const raw = excerpt(`{"Password":"${secret}","X-Auth-Token":"abc","note":"ok"} Basic YWRtaW46eA==`);
    assert.ok(!raw.includes(secret) && !raw.includes('YWRtaW46eA==') && raw.includes('"note":"ok"'), raw);
  });
});
