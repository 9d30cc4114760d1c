/**
 * Hostile specs, generated (fast-check, fixed seeds, 1,200 cases in all): path traversal in file references,
 * env names outside the worker's prefix, shell metacharacters, control characters, bidi and zero-width tricks,
 * huge strings and arrays, deep nesting, many keys, alias bombs, duplicate keys, random YAML.
 *
 * Asserted on every case:
 *   - no crash: parsing throws nothing but InvalidSpecError, validation throws nothing at all, and the worker's
 *     scope check throws nothing but InvalidSpecError;
 *   - every problem names its field (a path in the spec's grammar, or `(file)` / `line N` for the text itself),
 *     and neither path nor message holds a character that could forge or hide terminal output;
 *   - no path traversal is accepted into a secret reference: a spec that passes validation AND the worker's
 *     scope check only ever reads files inside the credentials directory — checked by reading them: the content
 *     is never the secret planted outside (reached by `..`, an absolute path, a symlink out, /proc or /dev).
 * Real files: the credentials directory holds a key, symlinks out (to a file, a directory, /dev/zero), a FIFO.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { extname, join, resolve } from 'node:path';
import { after, describe, test } from 'node:test';
import fc from 'fast-check';
import { InvalidSpecError, printable } from '../../src/common/errors';
import { parseSpecText } from '../../src/spec/load';
import { secretReferences } from '../../src/spec/references';
import { validateServerSpec, type SpecIssue } from '../../src/spec/validate';
import { assertSecretScope, readScopedFile, secretScopeFromEnv } from '../../src/transports/secret-scope';
import { CredentialUnavailableError } from '../../src/common/errors';

// ---- the trap: a credentials directory, and a secret outside it -------------------------------------------------
const root = mkdtempSync(join(tmpdir(), 'underlay-hostile-'));
const dir = join(root, 'credentials');
const outside = join(root, 'elsewhere');
mkdirSync(join(dir, 'sub'), { recursive: true, mode: 0o700 });
mkdirSync(outside, { mode: 0o700 });
const INSIDE = 'inside-key-material';
const OUTSIDE_SECRET = 'OUTSIDE-SECRET-never-read';
writeFileSync(join(dir, 'key'), INSIDE, { mode: 0o600 });
writeFileSync(join(dir, 'sub', 'key'), INSIDE, { mode: 0o600 });
writeFileSync(join(outside, 'victim'), OUTSIDE_SECRET, { mode: 0o600 });
symlinkSync(join(outside, 'victim'), join(dir, 'link-out'));
symlinkSync(outside, join(dir, 'dir-out'));
symlinkSync('/dev/zero', join(dir, 'zero'));
symlinkSync('/proc/self/environ', join(dir, 'environ'));
symlinkSync(join(dir, 'key'), join(dir, 'link-in'));
execFileSync('mkfifo', [join(dir, 'fifo')]);
const scope = secretScopeFromEnv({ UNDERLAY_CREDENTIALS_DIR: dir, UNDERLAY_SECRET_X: 'x', UNDERLAY_CODEC_KEY: OUTSIDE_SECRET });
after(() => rmSync(root, { recursive: true, force: true }));

// ---- examples as raw objects, their references moved into the trap's credentials directory -----------------------
const EXAMPLES = resolve(__dirname, '../../examples');
type Raw = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
function rebase(raw: Raw): Raw {
  raw.management.credentials = { privateKeyFile: 'key' };
  if (raw.hypervisor?.kind === 'esxi') Object.assign(raw.hypervisor.bmc, { credentials: { file: 'sub/key' }, tls: { caFile: 'link-in' } });
  if (raw.attach?.kind === 'vds')
    Object.assign(raw.attach.vcenter, { credentials: { usernameEnv: 'UNDERLAY_SECRET_X', passwordEnv: 'UNDERLAY_SECRET_X' }, caFile: 'key' });
  return raw;
}
const examples = readdirSync(EXAMPLES)
  .filter((f) => ['.yaml', '.json'].includes(extname(f)))
  .sort()
  .map((f) => rebase(parseSpecText(readFileSync(join(EXAMPLES, f), 'utf8'), f) as Raw));

// ---- hostile values -----------------------------------------------------------------------------------------------
const traversalSegments = [
  '..',
  '.',
  '',
  '~',
  'elsewhere',
  'victim',
  'link-out',
  'dir-out',
  'zero',
  'environ',
  'fifo',
  'key',
  'sub',
  'link-in',
  'proc',
  'self',
  'dev',
  'etc',
  'shadow',
];
const hostilePath = fc.oneof(
  fc.constantFrom(
    '../elsewhere/victim',
    `${dir}/../elsewhere/victim`,
    join(outside, 'victim'),
    'link-out',
    'dir-out/victim',
    'zero',
    'environ',
    'fifo',
    '/dev/zero',
    '/proc/self/environ',
    '//proc/self/mem',
    '/sys/kernel/notes',
    '~/.ssh/id_ed25519',
    '/etc/shadow',
    'key',
    'sub/key',
    'link-in',
    `${dir}/key`,
    `${dir}//key`,
    `${dir}/./key`,
    `${dir}/sub/../key`,
  ),
  fc.array(fc.constantFrom(...traversalSegments), { minLength: 1, maxLength: 6 }).map((segs) => segs.join('/')),
  fc
    .tuple(fc.constantFrom('/', `${dir}/`, `${root}/`, ''), fc.array(fc.constantFrom(...traversalSegments), { minLength: 1, maxLength: 5 }))
    .map(([p, segs]) => p + segs.join('/')),
);
const hostileEnv = fc.oneof(
  fc.constantFrom('UNDERLAY_CODEC_KEY', 'UNDERLAY_CODEC_KEYS_FILE', 'UNDERLAY_CODEC_TOKEN', 'TEMPORAL_API_KEY', 'HOME', 'PATH', 'SSH_AUTH_SOCK'),
  fc.constantFrom('UNDERLAY_SECRET_', 'UNDERLAY_SECRET_X', 'UNDERLAY_SECRETX', 'underlay_secret_x', 'UNDERLAY_SECRET_X\n', 'UNDERLAY_SECRET_$(id)'),
  fc.stringMatching(/^[A-Z_][A-Z0-9_]{0,40}$/),
);
const tricks = [
  '\n',
  '\r\n',
  '\u0000',
  '\u001b[2J',
  '\u202e',
  '\u200b',
  '\u2028',
  '\ufeff',
  'ра',
  '／',
  '$(reboot)',
  '`id`',
  ';rm -rf /',
  '|',
  '&&',
  "'",
  '"',
  '\\',
  '%00',
  '{{x}}',
];
const hostileString = fc.oneof(
  fc.constantFrom(...tricks),
  fc.tuple(fc.string({ maxLength: 12 }), fc.constantFrom(...tricks), fc.string({ maxLength: 12 })).map(([a, t, b]) => a + t + b),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({ unit: 'grapheme', maxLength: 20 }),
  fc.integer({ min: 1000, max: 20_000 }).map((n) => 'a'.repeat(n)),
  hostilePath,
  hostileEnv,
);
const hostileKey = fc.oneof(fc.constantFrom('password', 'privateKey', '__proto__', 'constructor', 'toString', 'kind', '', 'a\nb', '\u202ekey'), hostileString);
const hostileValue: fc.Arbitrary<unknown> = fc.oneof(
  hostileString,
  fc.constantFrom(null, true, false, 0, -1, 1e308, Number.MAX_SAFE_INTEGER, 4095, 65536, 1.5),
  fc.integer({ min: 100, max: 20_000 }).map((n) => Array.from({ length: n }, (_, i) => ({ name: `eth${i}` }))),
  fc.integer({ min: 17, max: 3000 }).map((d) => {
    let v: unknown = 'x';
    for (let i = 0; i < d; i++) v = i % 2 ? [v] : { a: v };
    return v;
  }),
  fc.integer({ min: 100, max: 5000 }).map((n) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}\n`, i]))),
  fc.dictionary(hostileKey, hostileString, { maxKeys: 5 }),
  fc.array(hostileString, { maxLength: 5 }),
);

/** Every leaf and container path of a raw object. */
function pathsOf(v: unknown, prefix: Array<string | number> = [], out: Array<Array<string | number>> = []): Array<Array<string | number>> {
  out.push(prefix);
  if (Array.isArray(v)) v.forEach((x, i) => pathsOf(x, [...prefix, i], out));
  else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) pathsOf(x, [...prefix, k], out);
  return out;
}

function setPath(rootObj: Record<string, unknown>, path: Array<string | number>, value: unknown, asNewKey?: string): void {
  let cur: Record<string | number, unknown> = rootObj;
  for (const k of path.slice(0, -1)) cur = cur[k] as Record<string | number, unknown>;
  if (asNewKey !== undefined) {
    const target = path.length ? (cur[path[path.length - 1]!] as Record<string, unknown>) : rootObj;
    if (target && typeof target === 'object' && !Array.isArray(target))
      Object.defineProperty(target, asNewKey, { value, enumerable: true, configurable: true, writable: true });
    return;
  }
  if (path.length) cur[path[path.length - 1]!] = value;
}

// ---- what every outcome must satisfy ------------------------------------------------------------------------------
const FIELD_PATH = /^(?:\(root\)|\(file\)|\(more\)|line (?:\d+|\?)|(?:[A-Za-z_][A-Za-z0-9_-]*|\["[^"]*"\])(?:\.[A-Za-z_][A-Za-z0-9_-]*|\[\d+\]|\["[^"]*"\])*)$/;
const stats = { cases: 0, rejected: 0, accepted: 0, scopeRefused: 0, filesRead: 0 };

function checkIssues(issues: SpecIssue[], where: string): void {
  assert.ok(issues.length > 0, `${where}: rejected without an issue`);
  for (const i of issues) {
    assert.match(i.path, FIELD_PATH, `${where}: issue path ${JSON.stringify(i.path)} does not name a field`);
    assert.ok(i.message.length > 0, `${where}: empty message at ${i.path}`);
    assert.equal(printable(i.path, Infinity), i.path, `${where}: unprintable path ${JSON.stringify(i.path)}`);
    assert.equal(printable(i.message, Infinity), i.message, `${where}: unprintable message ${JSON.stringify(i.message)}`);
  }
}

/** Validation, then — for an accepted spec — the worker's scope check and the reads it would do. */
function checkRaw(raw: unknown, where: string): void {
  stats.cases++;
  const r = validateServerSpec(raw); // must never throw
  if (!r.ok) {
    stats.rejected++;
    checkIssues(r.issues, where);
    return;
  }
  stats.accepted++;
  const refs = secretReferences(r.spec);
  try {
    assertSecretScope(r.spec, scope);
  } catch (err) {
    assert.ok(err instanceof InvalidSpecError, `${where}: scope check threw ${String(err)}`);
    checkIssues(err.issues, where);
    const fields = new Set(refs.map((x) => x.field));
    for (const i of err.issues) assert.ok(fields.has(i.path), `${where}: scope issue ${i.path} is not a reference field`);
    stats.scopeRefused++;
    return;
  }
  // Accepted by the worker: every file reference must read only what is inside the credentials directory.
  for (const ref of refs) {
    if (ref.kind !== 'file') {
      assert.ok(
        ref.name.startsWith('UNDERLAY_SECRET_') || (ref.kind === 'agent-socket-env' && ref.name === 'SSH_AUTH_SOCK'),
        `${where}: env ${ref.name} accepted`,
      );
      continue;
    }
    try {
      const content = readScopedFile(ref.name, { kind: 'secret', what: 'file' }, { host: 'h', field: ref.field }, scope).toString();
      stats.filesRead++;
      assert.equal(content, INSIDE, `${where}: ${ref.field} = ${ref.name} read something that is not inside the credentials directory`);
    } catch (err) {
      assert.ok(err instanceof InvalidSpecError || err instanceof CredentialUnavailableError, `${where}: read threw ${String(err)}`);
      assert.ok(!String(err).includes(OUTSIDE_SECRET));
    }
  }
}

function checkText(text: string, where: string): void {
  let raw: unknown;
  try {
    raw = parseSpecText(text, 'hostile.yaml');
  } catch (err) {
    assert.ok(err instanceof InvalidSpecError, `${where}: parse threw ${String(err)}`);
    assert.match(err.message, /^hostile\.yaml /, 'the error names the file');
    stats.cases++;
    stats.rejected++;
    checkIssues(err.issues, where);
    return;
  }
  checkRaw(raw, where);
}

describe('hostile specs (fast-check, seeded)', () => {
  test('600 mutations of the examples: a hostile value or key anywhere', () => {
    fc.assert(
      fc.property(fc.nat(examples.length - 1), fc.nat(), hostileValue, fc.option(hostileKey, { nil: undefined }), (ei, pi, value, newKey) => {
        const raw = structuredClone(examples[ei]!);
        const paths = pathsOf(raw);
        const path = paths[pi % paths.length]!;
        setPath(raw, path, value, newKey);
        checkRaw(raw, `example ${ei} at ${JSON.stringify(path)}${newKey !== undefined ? ` new key ${JSON.stringify(newKey)}` : ''}`);
      }),
      { seed: 20261130, numRuns: 600 },
    );
  });

  test('400 credential references: traversal, /proc, /dev, symlinks out, env names outside the prefix', () => {
    const refArb = fc.oneof(
      hostilePath.map((p) => ({ where: 'ssh', cred: { privateKeyFile: p } })),
      fc.tuple(hostilePath, hostileEnv).map(([p, e]) => ({ where: 'ssh', cred: { privateKeyFile: p, passphraseEnv: e } })),
      hostileEnv.map((e) => ({ where: 'ssh', cred: { privateKeyEnv: e } })),
      hostileEnv.map((e) => ({ where: 'ssh', cred: { agent: true, agentSocketEnv: e } })),
      hostilePath.map((p) => ({ where: 'bmc', cred: { file: p } })),
      fc.tuple(hostileEnv, hostileEnv).map(([u, p]) => ({ where: 'bmc', cred: { usernameEnv: u, passwordEnv: p } })),
      hostilePath.map((p) => ({ where: 'bmc-ca', cred: p })),
      hostilePath.map((p) => ({ where: 'vcenter-ca', cred: p })),
      hostilePath.map((p) => ({ where: 'vcenter', cred: { file: p } })),
    );
    const esxi = examples.find((e) => (e.attach as { kind?: string } | undefined)?.kind === 'vds')!;
    fc.assert(
      fc.property(refArb, ({ where, cred }) => {
        const raw = structuredClone(esxi);
        if (where === 'ssh') raw.management.credentials = cred;
        else if (where === 'bmc') raw.hypervisor.bmc.credentials = cred;
        else if (where === 'bmc-ca') raw.hypervisor.bmc.tls = { caFile: cred };
        else if (where === 'vcenter-ca') raw.attach.vcenter.caFile = cred;
        else raw.attach.vcenter.credentials = cred;
        checkRaw(raw, `${where} ${JSON.stringify(cred)}`);
      }),
      { seed: 424242, numRuns: 400 },
    );
  });

  test('200 hostile texts: alias bombs, deep nesting, duplicate keys, many keys, tags, random bytes', () => {
    const aliasBomb = fc.integer({ min: 3, max: 12 }).map((levels) => {
      const lines = ['a0: &a0 [x, x, x, x, x, x, x, x, x, x]'];
      for (let i = 1; i < levels; i++)
        lines.push(
          `a${i}: &a${i} [${Array(10)
            .fill(`*a${i - 1}`)
            .join(', ')}]`,
        );
      return `id: x\n${lines.join('\n')}\n`;
    });
    const deep = fc.integer({ min: 17, max: 20_000 }).map((d) => `id: ${'['.repeat(d)}${']'.repeat(d)}\n`);
    const deepMap = fc.integer({ min: 17, max: 3000 }).map((d) => Array.from({ length: d }, (_, i) => `${' '.repeat(i)}k${i}:`).join('\n') + ' x\n');
    const dupKeys = fc.integer({ min: 2, max: 2000 }).map((n) => Array.from({ length: n }, () => 'site: a').join('\n'));
    const manyKeys = fc.integer({ min: 100, max: 8000 }).map((n) => Array.from({ length: n }, (_, i) => `"k\\n${i}": ${i}`).join('\n'));
    const tags = fc.constantFrom(
      'id: !!js/function "function(){}"',
      'id: !!binary aGVsbG8=',
      'id: !custom x',
      '%YAML 1.1\n---\nid: x',
      'a: 1\n---\nb: 2',
      '? [a, b]\n: c',
      '<<: {a: 1}',
    );
    const bytes = fc.uint8Array({ maxLength: 2000 }).map((b) => Buffer.from(b).toString('latin1'));
    const textual = fc.tuple(fc.constantFrom(...examples.map((e) => JSON.stringify(e))), fc.nat(), hostileString).map(([t, at, s]) => {
      const i = at % (t.length + 1);
      return t.slice(0, i) + s + t.slice(i);
    });
    const oversize = fc.constant(`id: x\npad: "${'p'.repeat(300 * 1024)}"\n`);
    fc.assert(
      fc.property(
        fc.oneof(aliasBomb, deep, deepMap, dupKeys, manyKeys, tags, bytes, textual, oversize, fc.string({ unit: 'binary', maxLength: 500 })),
        (text) => {
          checkText(text, `text of ${text.length} chars: ${JSON.stringify(text.slice(0, 60))}`);
        },
      ),
      { seed: 1337, numRuns: 200 },
    );
  });

  test('the run covered what it claims', (t) => {
    t.diagnostic(JSON.stringify(stats));
    assert.ok(stats.cases >= 1200, `${stats.cases} cases`);
    assert.ok(stats.rejected > 0 && stats.accepted > 0 && stats.scopeRefused > 0 && stats.filesRead > 0, JSON.stringify(stats));
  });
});
