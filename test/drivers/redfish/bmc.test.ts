/**
 * The Redfish driver against sushy-tools' emulator (fake systems driver, TLS, basic auth): discovery, inventory,
 * power, boot override, virtual media. Sessions, ETag/If-Match with 412 and task monitors through the Redfish front
 * (test/helpers/sushy.ts), which adds those protocol features in front of the same emulator.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { InvalidSpecError, UnsupportedHardwareError } from '../../../src/common/errors';
import { RedfishBmc, normaliseMac, resetSequence, type BmcSpec } from '../../../src/drivers/redfish/bmc';
import { DEFAULT_SYSTEM, startRedfishFront, startSushy, type FakeSystem, type RedfishFront, type Sushy } from '../../helpers/sushy';

const SECOND: FakeSystem = { uuid: '6a1e5b0c-2f44-4a6b-9b2c-1d7e0c3f5a02', name: 'esx02', power_state: 'On', nics: [{ mac: '52:54:00:e5:01:01' }] };

let sushy: Sushy;
let iso: Server;
let isoPort: number;
let isoHits = 0;

before(async () => {
  sushy = await startSushy({ systems: [DEFAULT_SYSTEM, SECOND] });
  // The installer ISO, served locally: sushy's InsertMedia downloads the image.
  iso = createServer((req, res) => {
    isoHits++;
    res.writeHead(req.url === '/esxi.iso' ? 200 : 404, { 'Content-Type': 'application/octet-stream' });
    res.end(req.url === '/esxi.iso' ? Buffer.alloc(64 * 1024, 0x2a) : undefined);
  });
  await new Promise<void>((r) => iso.listen(0, '127.0.0.1', r));
  isoPort = (iso.address() as { port: number }).port;
});
after(async () => {
  await sushy?.stop();
  await new Promise<void>((r) => (iso ? iso.close(() => r()) : r()));
});

const spec = (over: Partial<BmcSpec> = {}): BmcSpec => ({
  address: '127.0.0.1',
  port: sushy.port,
  systemId: DEFAULT_SYSTEM.uuid,
  credentials: { file: sushy.credentialFile },
  tls: { certFile: sushy.certFile, fingerprint: sushy.fingerprint },
  ...over,
});

async function withBmc<T>(s: BmcSpec, fn: (bmc: RedfishBmc) => Promise<T>): Promise<T> {
  const bmc = await RedfishBmc.connect(s, 'esx01');
  try {
    return await fn(bmc);
  } finally {
    await bmc.close();
  }
}

describe('against sushy-tools', () => {
  test('system discovery: by systemId; several systems and none named is refused, naming them', async () => {
    await withBmc(spec(), async (bmc) => {
      assert.equal(await bmc.systemPath(), `/redfish/v1/Systems/${DEFAULT_SYSTEM.uuid}`);
      assert.equal(bmc.usesSession, false, 'sushy has no SessionService: basic auth');
    });
    await withBmc(spec({ systemId: undefined }), async (bmc) => {
      await assert.rejects(
        bmc.systemPath(),
        (e: unknown) => e instanceof InvalidSpecError && e.message.includes(DEFAULT_SYSTEM.uuid) && e.message.includes(SECOND.uuid),
      );
    });
    await withBmc(spec({ systemId: 'no-such-system' }), async (bmc) => {
      await assert.rejects(bmc.systemPath(), (e: unknown) => e instanceof InvalidSpecError && /hypervisor\.bmc\.systemId/.test(e.message));
    });
  });

  test('inventory: EthernetInterfaces MACs (sushy reports no link state or speed)', async () => {
    const nics = await withBmc(spec(), (bmc) => bmc.ethernetInterfaces());
    assert.deepEqual(
      nics.map((n) => n.mac),
      DEFAULT_SYSTEM.nics.map((n) => n.mac),
    );
    assert.ok(nics.every((n) => n.linkStatus === undefined && n.speedMbps === undefined));
  });

  test('power: On from Off, then a power cycle chosen from ResetType AllowableValues, PowerState polled', async () => {
    await withBmc(spec(), async (bmc) => {
      const sys = await bmc.system();
      assert.deepEqual(sys.resetTypes, ['On', 'ForceOff', 'GracefulShutdown', 'GracefulRestart', 'ForceRestart', 'Nmi', 'ForceOn']);
      const on = resetSequence('on', sys.powerState, sys.resetTypes);
      assert.deepEqual(on, ['On']);
      await bmc.reset(on[0]!);
      await bmc.waitPowerState('On', { timeoutMs: 20_000, intervalMs: 500 });
      const cycle = resetSequence('cycle', 'On', (await bmc.system()).resetTypes);
      assert.deepEqual(cycle, ['ForceRestart']);
      await bmc.reset('ForceRestart');
      assert.equal((await bmc.system()).powerState, 'Off', 'sushy: a restart goes Off at once');
      await bmc.waitPowerState('On', { timeoutMs: 20_000, intervalMs: 500 });
      await assert.rejects(bmc.reset('PowerCycle'), UnsupportedHardwareError);
    });
    assert.equal(sushy.requests(/ComputerSystem\.Reset/).length, 2);
  });

  test('one-time boot override to Cd, then back', async () => {
    await withBmc(spec(), async (bmc) => {
      assert.equal((await bmc.system()).boot.target, 'Hdd');
      await bmc.setBootOverride({ target: 'Cd', enabled: 'Once' });
      assert.equal((await bmc.system()).boot.target, 'Cd');
      await assert.rejects(bmc.setBootOverride({ target: 'Floppy', enabled: 'Once' }), UnsupportedHardwareError);
      await bmc.setBootOverride({ target: 'Hdd', enabled: 'Continuous' });
      assert.equal((await bmc.system()).boot.target, 'Hdd');
    });
  });

  test('virtual media: the CD device found from the system, InsertMedia and EjectMedia', async () => {
    const image = `http://127.0.0.1:${isoPort}/esxi.iso`;
    await withBmc(spec(), async (bmc) => {
      const before = await bmc.cdMedia();
      assert.equal(before.id, 'Cd');
      assert.equal(before.inserted, false);
      await bmc.insertMedia(image);
      const inserted = await bmc.cdMedia();
      assert.equal(inserted.image, image);
      assert.equal(inserted.inserted, true);
      assert.equal(isoHits, 1, 'sushy fetched the image');
      await bmc.ejectMedia();
      assert.deepEqual(
        { ...(await bmc.cdMedia()), insertTarget: undefined, ejectTarget: undefined },
        { ...before, insertTarget: undefined, ejectTarget: undefined },
      );
    });
  });

  test('a wrong fingerprint is refused', async () => {
    await assert.rejects(
      RedfishBmc.connect(spec({ tls: { certFile: sushy.certFile, fingerprint: `sha256/${'A'.repeat(43)}=` } }), 'esx01'),
      /not the pinned one/,
    );
  });
});

describe('through a Redfish front: sessions, ETags, task monitors', () => {
  let front: RedfishFront;
  before(async () => {
    front = await startRedfishFront(sushy, { sessions: true, asyncActions: 2 });
  });
  after(() => front?.close());
  const viaFront = () => spec({ port: front.port, tls: { certFile: front.certFile, fingerprint: front.fingerprint } });

  test('a session is opened when the service offers one, used, and deleted on close', async () => {
    await withBmc(viaFront(), async (bmc) => {
      assert.equal(bmc.usesSession, true);
      assert.equal(front.openSessions(), 1);
      assert.equal((await bmc.system()).id, DEFAULT_SYSTEM.uuid);
    });
    assert.equal(front.openSessions(), 0);
    assert.ok(front.requests.some((r) => /^DELETE \/redfish\/v1\/SessionService\/Sessions\/\d+ 204$/.test(r)));
  });

  test('the boot override PATCH carries If-Match; a stale ETag (412) is retried once with a fresh one', async () => {
    await withBmc(viaFront(), async (bmc) => {
      front.raceNextPatch();
      await bmc.setBootOverride({ target: 'Pxe', enabled: 'Once' });
      assert.equal((await bmc.system()).boot.target, 'Pxe');
      await bmc.setBootOverride({ target: 'Hdd', enabled: 'Continuous' });
    });
    const patches = front.requests.filter((r) => r.startsWith('PATCH'));
    assert.deepEqual(
      patches.map((r) => r.split(' ')[2]),
      ['412', '204', '204'],
    );
  });

  test('InsertMedia answered 202: the task monitor is polled, honouring Retry-After, until done', async () => {
    const image = `http://127.0.0.1:${isoPort}/esxi.iso`;
    const t0 = Date.now();
    await withBmc(viaFront(), async (bmc) => {
      await bmc.insertMedia(image);
      assert.equal((await bmc.cdMedia()).image, image);
      await bmc.ejectMedia();
    });
    const elapsed = Date.now() - t0;
    const monitor = front.requests.filter((r) => r.includes('/TaskMonitors/'));
    // Per action: 202, 202 (Retry-After: 1 each), then 200 Completed.
    assert.deepEqual(
      monitor.map((r) => r.split(' ')[2]),
      ['202', '202', '200', '202', '202', '200'],
    );
    assert.ok(elapsed >= 5_500, `waited Retry-After between polls (${elapsed} ms)`);
  });
});

describe('through a Redfish front: an older BMC (media by PATCH, Reset types from ActionInfo)', () => {
  let front: RedfishFront;
  before(async () => {
    front = await startRedfishFront(sushy, { legacyMedia: true, resetActionInfo: ['On', 'ForceOff'] });
  });
  after(() => front?.close());
  const viaFront = () => spec({ port: front.port, tls: { certFile: front.certFile, fingerprint: front.fingerprint } });

  test('InsertMedia/EjectMedia refused (405): the media are set by PATCH with If-Match, and land in sushy', async () => {
    const image = `http://127.0.0.1:${isoPort}/esxi.iso`;
    const hits = isoHits;
    await withBmc(viaFront(), async (bmc) => {
      await bmc.insertMedia(image);
      const inserted = await bmc.cdMedia();
      assert.equal(inserted.image, image);
      assert.equal(inserted.inserted, true);
      assert.equal(isoHits, hits + 1, 'sushy fetched the image');
      await bmc.ejectMedia();
      assert.equal((await bmc.cdMedia()).inserted, false);
    });
    const media = front.requests.filter((r) => /VirtualMedia\/Cd(\/Actions\/.*)? /.test(r) && !r.startsWith('GET'));
    assert.deepEqual(
      media.map((r) => r.replace(/^(\w+) \S*?(\/Actions\/VirtualMedia\.\w+)? (\d+)$/, '$1$2 $3')),
      ['POST/Actions/VirtualMedia.InsertMedia 405', 'PATCH 204', 'POST/Actions/VirtualMedia.EjectMedia 405', 'PATCH 204'],
    );
    // In sushy's own log: its actions, called by the front on behalf of the PATCHes.
    assert.ok(sushy.requests(/VirtualMedia\.InsertMedia/).some((r) => / 204$/.test(r)));
  });

  test('the allowed Reset types come from the ActionInfo; a power cycle without a restart type is ForceOff, then On', async () => {
    await withBmc(viaFront(), async (bmc) => {
      const sys = await bmc.system();
      assert.deepEqual(sys.resetTypes, ['On', 'ForceOff']);
      if (sys.powerState !== 'On') {
        await bmc.reset('On');
        await bmc.waitPowerState('On', { timeoutMs: 20_000, intervalMs: 500 });
      }
      const cycle = resetSequence('cycle', 'On', sys.resetTypes);
      assert.deepEqual(cycle, ['ForceOff', 'On']);
      await bmc.reset('ForceOff');
      await bmc.waitPowerState('Off', { timeoutMs: 20_000, intervalMs: 500 });
      await bmc.reset('On');
      await bmc.waitPowerState('On', { timeoutMs: 20_000, intervalMs: 500 });
      // A type outside the ActionInfo is refused by the client, before any request.
      await assert.rejects(bmc.reset('ForceRestart'), UnsupportedHardwareError);
    });
    const resets = front.requests.filter((r) => r.includes('ComputerSystem.Reset'));
    assert.ok(
      resets.every((r) => / 204$/.test(r)),
      resets.join(', '),
    );
    assert.ok(resets.length >= 2 && resets.length <= 3, resets.join(', '));
    assert.equal(front.requests.filter((r) => r.includes('/ResetActionInfo')).length, 1, 'the ActionInfo is read once per client');
  });
});

test('MACs are normalised', () => {
  assert.equal(normaliseMac('52-54-00-AB-CD-EF'), '52:54:00:ab:cd:ef');
  assert.equal(normaliseMac('5254.00ab.cdef'), '52:54:00:ab:cd:ef');
  assert.equal(normaliseMac('bogus'), undefined);
});

test('reset sequences follow what the BMC allows', () => {
  assert.deepEqual(resetSequence('cycle', 'On', ['On', 'ForceOff', 'PowerCycle']), ['PowerCycle']);
  assert.deepEqual(resetSequence('cycle', 'On', ['On', 'ForceOff']), ['ForceOff', 'On']);
  assert.deepEqual(resetSequence('cycle', 'Off', ['ForceOn', 'ForceRestart']), ['ForceOn']);
  assert.deepEqual(resetSequence('off', 'Off', ['ForceOff']), []);
  assert.deepEqual(resetSequence('cycle', 'On', undefined), ['ForceRestart']);
  assert.throws(() => resetSequence('cycle', 'On', ['Nmi']), UnsupportedHardwareError);
});
