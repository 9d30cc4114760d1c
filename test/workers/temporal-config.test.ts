/**
 * The Temporal settings from envconfig profiles and TEMPORAL_* variables, as underlay checks them before
 * connecting: TOML profiles and their overrides, files by reference, and each refused setting named in one
 * message. No server: the connections themselves are proven in temporal-tls.test.ts.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { TemporalConnectionError } from '../../src/common/errors';
import { describeTemporalSettings, loadTemporalSettings } from '../../src/workers/temporal-config';
import { makePki, type Ca, type CertFiles, type Pki } from '../helpers/pki';

const tmp = mkdtempSync(join(tmpdir(), 'underlay-tcfg-'));
let pki: Pki;
let ca: Ca;
let cert: CertFiles;
let other: CertFiles;

before(async () => {
  pki = await makePki();
  ca = await pki.ca('ops-ca');
  [cert, other] = await Promise.all([ca.issue('client', 'underlay-worker'), ca.issue('client', 'someone-else')]);
});
after(async () => {
  await pki?.remove();
  rmSync(tmp, { recursive: true, force: true });
});

let n = 0;
function file(text: string, name = `f${++n}`): string {
  const p = join(tmp, name);
  writeFileSync(p, text);
  return p;
}

/** A clean environment: an empty $HOME, so no default config file of this machine leaks in. */
function envWith(vars: Record<string, string>): Record<string, string> {
  const home = join(tmp, `home${++n}`);
  mkdirSync(home);
  return { HOME: home, ...vars };
}

function refused(vars: Record<string, string>, message: RegExp): void {
  assert.throws(
    () => loadTemporalSettings(envWith(vars)),
    (err: unknown) => {
      assert.ok(err instanceof TemporalConnectionError, String(err));
      assert.equal(err.problem, 'config');
      assert.match(err.message, message);
      assert.equal(err.message.split('\n').length, 1, err.message);
      return true;
    },
  );
}

test('nothing set: the local dev server, namespace default, plain text', () => {
  const s = loadTemporalSettings(envWith({}));
  assert.equal(s.address, '127.0.0.1:7233');
  assert.equal(s.namespace, 'default');
  assert.equal(s.tls, false);
  assert.deepEqual(s.connectionOptions, { address: '127.0.0.1:7233' });
  assert.equal(describeTemporalSettings(s), 'Temporal profile "default" (no config file): 127.0.0.1:7233, namespace default, plain text (no TLS)');
});

test('a TOML profile with mTLS by file, chosen by TEMPORAL_PROFILE; TEMPORAL_* variables override it', () => {
  const toml = file(
    [
      '[profile.default]',
      'address = "127.0.0.1:7233"',
      '[profile.prod]',
      'address = "temporal.example.com:7233"',
      'namespace = "onboarding"',
      '[profile.prod.tls]',
      `server_ca_cert_path = "${ca.cert}"`,
      `client_cert_path = "${cert.cert}"`,
      `client_key_path = "${cert.key}"`,
      'server_name = "frontend.temporal.internal"',
    ].join('\n'),
  );
  const s = loadTemporalSettings(envWith({ TEMPORAL_CONFIG_FILE: toml, TEMPORAL_PROFILE: 'prod' }));
  assert.equal(s.profile, 'prod');
  assert.equal(s.configFile, toml);
  assert.equal(s.address, 'temporal.example.com:7233');
  assert.equal(s.namespace, 'onboarding');
  assert.ok(s.tls);
  assert.equal(s.tls.clientSubject, 'CN=underlay-worker');
  const tls = s.connectionOptions.tls as { serverNameOverride?: string; serverRootCACertificate?: Buffer; clientCertPair?: { crt: Buffer; key: Buffer } };
  assert.equal(tls.serverNameOverride, 'frontend.temporal.internal');
  assert.match(tls.serverRootCACertificate!.toString(), /BEGIN CERTIFICATE/);
  assert.match(tls.clientCertPair!.key.toString(), /BEGIN PRIVATE KEY/);
  assert.equal(
    describeTemporalSettings(s),
    `Temporal profile "prod" (from ${toml}): temporal.example.com:7233, namespace onboarding, TLS (CA ${ca.cert}, client certificate ${cert.cert} (CN=underlay-worker), server name frontend.temporal.internal)`,
  );

  const o = loadTemporalSettings(
    envWith({ TEMPORAL_CONFIG_FILE: toml, TEMPORAL_PROFILE: 'prod', TEMPORAL_ADDRESS: '[::1]:7300', TEMPORAL_NAMESPACE: 'staging' }),
  );
  assert.deepEqual([o.address, o.host, o.port, o.namespace], ['[::1]:7300', '::1', 7300, 'staging']);
  // Without TEMPORAL_PROFILE: the file's "default" profile.
  assert.equal(loadTemporalSettings(envWith({ TEMPORAL_CONFIG_FILE: toml })).tls, false);
});

test('the default config file ($HOME/.config/temporalio/temporal.toml) is read when it exists', () => {
  const e = envWith({});
  mkdirSync(join(e.HOME!, '.config', 'temporalio'), { recursive: true });
  writeFileSync(join(e.HOME!, '.config', 'temporalio', 'temporal.toml'), '[profile.default]\naddress = "10.0.0.5:7233"\nnamespace = "fleet"\n');
  const s = loadTemporalSettings(e);
  assert.deepEqual([s.address, s.namespace, s.configFile], ['10.0.0.5:7233', 'fleet', join(e.HOME!, '.config', 'temporalio', 'temporal.toml')]);
});

test('an API key turns TLS on with the system CAs; by file, never shown; gRPC headers named, not shown', () => {
  const keyFile = file('sk-abcdef0123456789\n');
  const s = loadTemporalSettings(envWith({ UNDERLAY_TEMPORAL_API_KEY_FILE: keyFile, TEMPORAL_GRPC_META_X_TEAM: 'secret-team' }));
  assert.equal(s.connectionOptions.apiKey, 'sk-abcdef0123456789');
  assert.equal(s.connectionOptions.tls, true);
  assert.deepEqual(s.connectionOptions.metadata, { 'x-team': 'secret-team' });
  const line = describeTemporalSettings(s);
  assert.equal(
    line,
    `Temporal profile "default" (no config file): 127.0.0.1:7233, namespace default, TLS (system CAs), API key from UNDERLAY_TEMPORAL_API_KEY_FILE=${keyFile}, gRPC headers x-team`,
  );
  assert.ok(!line.includes('sk-abcdef') && !line.includes('secret-team'));
  assert.equal(loadTemporalSettings(envWith({ TEMPORAL_API_KEY: 'k' })).apiKeySource, 'TEMPORAL_API_KEY');
});

test('refused before connecting, each with the setting named', () => {
  const toml = file('[profile.a]\naddress = "127.0.0.1:7233"\n[profile.b]\nnamespace = "x"\n');
  refused({ TEMPORAL_CONFIG_FILE: join(tmp, 'missing.toml') }, /^TEMPORAL_CONFIG_FILE=.*missing\.toml: no such file$/);
  refused({ TEMPORAL_CONFIG_FILE: toml, TEMPORAL_PROFILE: 'prod' }, /^TEMPORAL_PROFILE=prod: no \[profile\.prod\] in .* \(profiles there: a, b\)$/);
  refused({ TEMPORAL_PROFILE: 'prod' }, /^TEMPORAL_PROFILE=prod, but there is no config file \(looked for .*temporal\.toml; set TEMPORAL_CONFIG_FILE\)$/);
  refused(
    { TEMPORAL_CONFIG_FILE: file('[profile.default.tls]\nserver_ca_cert_pth = "/x"\n') },
    /^config file .*: Validation error: key\(s\) unrecognized in profile\.default\.tls: server_ca_cert_pth$/,
  );
  refused({ TEMPORAL_CONFIG_FILE: file('[profile.default\naddress = 1') }, /^config file .*: /);
  refused({ TEMPORAL_CONFIG_FILE: file('x'.repeat(70 * 1024)) }, /bytes, more than the 65536 a config file may have$/);
  refused({ TEMPORAL_ADDRESS: 'temporal.example.com' }, /^TEMPORAL_ADDRESS="temporal\.example\.com": expected <host>:<port>/);
  refused({ TEMPORAL_ADDRESS: 'a;b:7233' }, /^TEMPORAL_ADDRESS=/);
  refused({ TEMPORAL_NAMESPACE: 'bad namespace' }, /^TEMPORAL_NAMESPACE="bad namespace": not a namespace name$/);
  refused(
    { TEMPORAL_TLS: 'true', TEMPORAL_TLS_CLIENT_CERT_PATH: cert.cert, TEMPORAL_TLS_CLIENT_KEY_DATA: '-----BEGIN PRIVATE KEY-----' },
    /^TEMPORAL_TLS_CLIENT_KEY_DATA: underlay takes the client key by file only/,
  );
  refused({ TEMPORAL_TLS_CLIENT_CERT_PATH: cert.cert }, /^a client certificate without its key: set TEMPORAL_TLS_CLIENT_KEY_PATH/);
  refused(
    { TEMPORAL_TLS_CLIENT_CERT_PATH: cert.cert, TEMPORAL_TLS_CLIENT_KEY_PATH: other.key },
    /is not the key of the client certificate .* \(CN=underlay-worker\)$/,
  );
  refused({ TEMPORAL_TLS_SERVER_CA_CERT_PATH: cert.key }, /: not a PEM certificate/);
  refused(
    { TEMPORAL_TLS_SERVER_CA_CERT_PATH: file('x'.repeat(300 * 1024)) },
    /^TEMPORAL_TLS_SERVER_CA_CERT_PATH=.*: 307200 bytes, more than the 262144 a PEM file may have$/,
  );
  refused({ TEMPORAL_TLS_SERVER_CA_CERT_PATH: tmp }, /: not a regular file$/);
  refused({ TEMPORAL_TLS: 'true', TEMPORAL_TLS_DISABLE_HOST_VERIFICATION: 'true' }, /underlay always verifies the server certificate/);
  refused({ TEMPORAL_API_KEY: 'k', TEMPORAL_TLS: 'false' }, /^an API key \(TEMPORAL_API_KEY\) is sent only over TLS/);
  refused({ TEMPORAL_API_KEY: 'k', UNDERLAY_TEMPORAL_API_KEY_FILE: file('k') }, /^set either UNDERLAY_TEMPORAL_API_KEY_FILE or TEMPORAL_API_KEY, not both$/);
  refused({ UNDERLAY_TEMPORAL_API_KEY_FILE: file('\n') }, /: the file is empty$/);
  refused({ UNDERLAY_TEMPORAL_API_KEY_FILE: file('two\nlines') }, /: must be printable ASCII without spaces$/);
  refused({ TEMPORAL_GRPC_META_X_TEAM: 'a\r\nb' }, /^gRPC metadata header x-team: must be printable ASCII/);
});
