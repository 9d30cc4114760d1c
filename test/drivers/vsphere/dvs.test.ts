/**
 * The vSphere client against a real vcsim on 127.0.0.1 (test/helpers/vcsim.ts): session, pinned TLS, typed
 * faults, and the distributed switch operations the ESXi attach step is built from.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { AuthenticationError, CredentialUnavailableError, HostKeyMismatchError, InvalidSpecError } from '../../../src/common/errors';
import { VsphereClient } from '../../../src/drivers/vsphere/client';
import { addPortgroup, destroy, findByName, readDvs, readHost, readPortgroup, reconfigureHostMember, setPortgroupVlan } from '../../../src/drivers/vsphere/dvs';
import type { Mor } from '../../../src/drivers/vsphere/schema';
import { SoapFaultError } from '../../../src/transports/soap';
import { addClusterHost, createDvs, makeCertificate, startVcsim, type Vcsim } from '../../helpers/vcsim';

const wait = { sleep: (ms: number) => new Promise<void>((r) => setTimeout(r, ms)), timeoutMs: 10_000 };

describe('vSphere client against vcsim', () => {
  let vc: Vcsim;
  let c: VsphereClient;
  let dvsRef: Mor;
  let hostRef: Mor;

  before(async () => {
    vc = await startVcsim();
    c = await vc.client();
    dvsRef = await createDvs(c, 'DSwitch-drv');
    hostRef = await addClusterHost(c, 'esxi-drv.lab.test');
  });
  after(async () => {
    await c?.close();
    await vc?.stop();
  });

  test('service content and session: vCenter API, a session cookie, Logout on close', async () => {
    assert.equal(c.content.apiVersion, '6.5');
    assert.match(c.content.fullName, /vCenter Server/);
    assert.equal(c.soap.hasSession, true);
    const other = await vc.client();
    await other.close();
    assert.equal(other.soap.hasSession, false);
    assert.deepEqual(
      other.soap.log.map((l) => l.operation),
      ['RetrieveServiceContent', 'Login', 'Logout'],
    );
  });

  test('bad credentials: AuthenticationError, not retryable, the password nowhere in it', async () => {
    const wrong = 'UNDERLAY_SECRET_TEST_WRONG_PASSWORD';
    process.env[wrong] = 'not-the-password-123';
    try {
      const err = await VsphereClient.connect(vc.target({ credentials: { usernameEnv: vc.usernameEnv, passwordEnv: wrong } })).then(
        () => assert.fail('login succeeded'),
        (e: unknown) => e,
      );
      assert.ok(err instanceof AuthenticationError, String(err));
      assert.equal(err.retryable, false);
      assert.match(err.message, /InvalidLogin/);
      assert.doesNotMatch(err.message, /not-the-password-123/);
      assert.doesNotMatch(JSON.stringify(err.context), /not-the-password-123/);
    } finally {
      delete process.env[wrong];
    }
  });

  test('credentials by reference: an unset env var is CredentialUnavailableError, before any request', async () => {
    const err = await VsphereClient.connect(
      vc.target({ credentials: { usernameEnv: 'UNDERLAY_SECRET_TEST_UNSET_U', passwordEnv: 'UNDERLAY_SECRET_TEST_UNSET_P' } }),
    ).catch((e: unknown) => e);
    assert.ok(err instanceof CredentialUnavailableError, String(err));
    assert.equal(err.retryable, false);
  });

  test('TLS pinned: another certificate as CA file is refused (HostKeyMismatchError); no CA file, no connection', async () => {
    const { cert: otherCa } = await makeCertificate(vc.dir, 'not-vcsim');
    const err = await VsphereClient.connect(vc.target({ caFile: otherCa })).catch((e: unknown) => e);
    assert.ok(err instanceof HostKeyMismatchError, String(err));
    assert.equal(err.retryable, false);
    // No fallback to the publicly trusted CAs: without a CA file the password is never sent anywhere.
    const none = await VsphereClient.connect(vc.target({ caFile: '' })).catch((e: unknown) => e);
    assert.ok(none instanceof InvalidSpecError && /no CA file/.test(none.message), String(none));
    const missing = await VsphereClient.connect(vc.target({ caFile: `${vc.dir}/absent.pem` })).catch((e: unknown) => e);
    assert.ok(missing instanceof CredentialUnavailableError && /ENOENT/.test(missing.message), String(missing));
  });

  test('host members: add with pnic backing, remove; vcsim keeps no backing (config.host stays empty)', async () => {
    const host = await readHost(c, hostRef);
    assert.deepEqual(host.pnics, ['vmnic0', 'vmnic1']);
    let dvs = await readDvs(c, dvsRef);
    assert.equal(dvs.name, 'DSwitch-drv');
    assert.ok(!dvs.members.some((m) => m.value === hostRef.value));
    await reconfigureHostMember(c, dvs, 'add', hostRef, [{ device: 'vmnic0' }, { device: 'vmnic1' }], wait);
    dvs = await readDvs(c, dvsRef);
    assert.ok(dvs.members.some((m) => m.value === hostRef.value));
    assert.deepEqual(dvs.backing, {}, 'vcsim does not record the pnic backing');
    // Adding twice is a fault vCenter reports, typed and final.
    const again = await reconfigureHostMember(c, dvs, 'add', hostRef, [{ device: 'vmnic0' }], wait).catch((e: unknown) => e);
    assert.ok(again instanceof SoapFaultError && again.fault === 'AlreadyExists' && !again.retryable, String(again));
    // vcsim implements no member edit (vCenter does): the fault is typed, not faked.
    const edit = await reconfigureHostMember(c, dvs, 'edit', hostRef, [{ device: 'vmnic1' }], wait).catch((e: unknown) => e);
    assert.ok(edit instanceof SoapFaultError && edit.fault === 'NotSupported', String(edit));
    await reconfigureHostMember(c, dvs, 'remove', hostRef, undefined, wait);
    assert.ok(!(await readDvs(c, dvsRef)).members.some((m) => m.value === hostRef.value));
  });

  test('port groups: create with a VLAN, change it (id, trunk), destroy; names round-trip escaped', async () => {
    await addPortgroup(c, dvsRef, 'pg-drv-120', { kind: 'id', id: 120 }, wait);
    const [ref] = await findByName(c, 'DistributedVirtualPortgroup', 'pg-drv-120');
    assert.ok(ref);
    let pg = await readPortgroup(c, ref);
    assert.deepEqual({ name: pg.name, switch: pg.switch.value, vlan: pg.vlan }, { name: 'pg-drv-120', switch: dvsRef.value, vlan: { kind: 'id', id: 120 } });
    await setPortgroupVlan(
      c,
      pg,
      {
        kind: 'trunk',
        ranges: [
          { start: 10, end: 20 },
          { start: 30, end: 30 },
        ],
      },
      wait,
    );
    pg = await readPortgroup(c, ref);
    assert.deepEqual(pg.vlan, {
      kind: 'trunk',
      ranges: [
        { start: 10, end: 20 },
        { start: 30, end: 30 },
      ],
    });
    assert.equal(pg.name, 'pg-drv-120');
    const dup = await addPortgroup(c, dvsRef, 'pg-drv-120', { kind: 'id', id: 5 }, wait).catch((e: unknown) => e);
    assert.ok(dup instanceof SoapFaultError && dup.fault === 'DuplicateName' && !dup.retryable, String(dup));
    await destroy(c, ref, wait);
    assert.deepEqual(await findByName(c, 'DistributedVirtualPortgroup', 'pg-drv-120'), []);

    // The driver does not restrict names (the spec does); whatever it sends is escaped and comes back intact.
    const odd = `odd & <name> "quoted" 'single'`;
    await addPortgroup(c, dvsRef, odd, { kind: 'id', id: 0 }, wait);
    const [oddRef] = await findByName(c, 'DistributedVirtualPortgroup', odd);
    assert.equal((await readPortgroup(c, oddRef!)).name, odd);
    await destroy(c, oddRef!, wait);
  });

  test('an unknown object is a typed fault (ManagedObjectNotFound), not a crash', async () => {
    const err = await readDvs(c, { type: 'VmwareDistributedVirtualSwitch', value: 'dvs-999999' }).catch((e: unknown) => e);
    assert.ok(err instanceof Error, String(err));
    assert.match(err.message, /ManagedObjectNotFound|not returned/);
  });
});
