/**
 * The worker's ISO server over real HTTPS on 127.0.0.1: only its own files, only with the per-install token, byte
 * ranges as BMCs read a CD image, and nothing secret in its log.
 */
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { IsoServer, isoTokenHash, maskIsoUrl, parseIsoUrl, parseRange, pruneIsos, removeIsos } from '../../src/transports/iso-server';
import { makeCertificate } from '../helpers/sushy';

let dir: string;
let server: IsoServer;
let ca: string;
const BODY = Buffer.from(Array.from({ length: 100_000 }, (_, i) => i % 251));

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'underlay-isosrv-'));
  const c = await makeCertificate(dir, 'iso');
  ca = c.certFile;
  await mkdir(join(dir, 'work'), { mode: 0o700 });
  server = await IsoServer.start({ host: '127.0.0.1', port: 0, certFile: c.certFile, keyFile: c.keyFile, dir: join(dir, 'work') });
});
after(async () => {
  await server?.stop();
  await rm(dir, { recursive: true, force: true });
});

function get(url: string, headers: Record<string, string> = {}, method = 'GET'): Promise<{ status: number; headers: Record<string, unknown>; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const req = request({ host: u.hostname, port: u.port, path: u.pathname, method, headers, ca: readFileSync(ca) }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end();
  });
}

async function published(serverId: string): Promise<{ url: string; file: string }> {
  const slot = server.slot(serverId);
  await writeFile(slot.file, BODY, { mode: 0o600 });
  return slot;
}

describe('ISO server', () => {
  test('serves the file for its token, whole and by range; HEAD; the log names the server, never the token', async () => {
    const { url } = await published('esx01');
    const all = await get(url);
    assert.equal(all.status, 200);
    assert.deepEqual(all.body, BODY);
    assert.equal(all.headers['accept-ranges'], 'bytes');
    const part = await get(url, { Range: 'bytes=1000-1999' });
    assert.equal(part.status, 206);
    assert.equal(part.headers['content-range'], `bytes 1000-1999/${BODY.length}`);
    assert.deepEqual(part.body, BODY.subarray(1000, 2000));
    const tail = await get(url, { Range: 'bytes=-10' });
    assert.deepEqual(tail.body, BODY.subarray(BODY.length - 10));
    const head = await get(url, {}, 'HEAD');
    assert.equal(head.status, 200);
    assert.equal(head.headers['content-length'], String(BODY.length));
    assert.equal((await get(url, { Range: `bytes=${BODY.length}-` })).status, 416);
    const token = parseIsoUrl(url)!.token;
    assert.ok(!JSON.stringify(server.log).includes(token));
    assert.deepEqual(
      server.log.slice(-5).map((e) => [e.serverId, e.method, e.status, e.range ?? '']),
      [
        ['esx01', 'GET', 200, ''],
        ['esx01', 'GET', 206, '1000-1999'],
        ['esx01', 'GET', 206, `${BODY.length - 10}-${BODY.length - 1}`],
        ['esx01', 'HEAD', 200, ''],
        ['esx01', 'GET', 416, ''],
      ],
    );
  });

  test('another token, another server id, another path or method: nothing', async () => {
    const { url } = await published('esx02');
    const p = parseIsoUrl(url)!;
    const other = server.slot('esx02').url; // a valid token of the right shape that names no file
    assert.equal((await get(other)).status, 404);
    assert.equal((await get(url.replace('/esx02.iso', '/esx03.iso'))).status, 404);
    assert.equal((await get(`${server.url}/iso/../../etc/passwd`)).status, 404);
    assert.equal((await get(`${server.url}/iso/${p.token}/`)).status, 404);
    assert.equal((await get(url, {}, 'DELETE')).status, 405);
    assert.equal((await get(url)).status, 200);
  });

  test('only private regular files of its own: a group-readable file or a symlink is not served', async () => {
    const a = await published('esx04');
    await chmod(a.file, 0o644);
    assert.equal((await get(a.url)).status, 404);
    const b = server.slot('esx05');
    await writeFile(join(dir, 'elsewhere.iso'), BODY, { mode: 0o600 });
    await symlink(join(dir, 'elsewhere.iso'), b.file);
    assert.equal((await get(b.url)).status, 404);
  });

  test('URLs are recognised and masked without a server; files are removed by server id', async () => {
    const { url, file } = await published('esx06');
    const p = parseIsoUrl(url)!;
    assert.equal(p.serverId, 'esx06');
    assert.equal(maskIsoUrl(url), `${server.url}/iso/***/esx06.iso`);
    assert.deepEqual(server.recognise(url), { serverId: 'esx06', tokenHash: isoTokenHash(p.token) });
    assert.ok(file.endsWith(`esx06-${isoTokenHash(p.token)}.iso`));
    assert.equal(parseIsoUrl('https://repo.example/esxi.iso'), undefined);
    assert.equal(await removeIsos(join(dir, 'work'), 'esx06'), 1);
    assert.equal((await get(url)).status, 404);
    assert.equal(await pruneIsos(join(dir, 'work'), 60_000), 0);
  });

  test('Range parsing', () => {
    assert.deepEqual(parseRange('bytes=0-9', 100), { start: 0, end: 9 });
    assert.deepEqual(parseRange('bytes=90-', 100), { start: 90, end: 99 });
    assert.deepEqual(parseRange('bytes=50-500', 100), { start: 50, end: 99 });
    assert.equal(parseRange('bytes=0-1,5-9', 100), null);
    assert.equal(parseRange('bytes=100-', 100), 'invalid');
    assert.equal(parseRange('bytes=-0', 100), 'invalid');
    assert.equal(parseRange('items=1-2', 100), 'invalid');
    assert.equal(parseRange(undefined, 100), null);
  });
});
