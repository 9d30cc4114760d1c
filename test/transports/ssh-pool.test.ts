/**
 * The SSH session pool against a real OpenSSH sshd on 127.0.0.1 (test/helpers/sshd.ts). Reuse is proven from
 * the host's side: `$SSH_CONNECTION` names the client's source port (one per TCP connection), and sshd counts
 * the logins it accepted (one per handshake).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { HostKeyMismatchError } from '../../src/common/errors';
import { SshPool, poolKey } from '../../src/transports/ssh-pool';
import { sleep, startSshd, type Sshd } from '../helpers/sshd';

let sshd: Sshd;
before(async () => {
  sshd = await startSshd();
});
after(async () => {
  await sshd?.stop();
});

/** The client end of the session's TCP connection, as the host sees it: `127.0.0.1 <port>`. */
async function clientEnd(pool: SshPool, label = 'pool-test'): Promise<{ end: string; reused: boolean }> {
  const lease = await pool.acquire(sshd.target({ label }));
  try {
    const r = await lease.session.exec('echo "$SSH_CONNECTION"');
    const end = r.stdout.trim().split(' ').slice(0, 2).join(' ');
    assert.match(end, /^127\.0\.0\.1 \d+$/);
    lease.release(true);
    return { end, reused: lease.reused };
  } catch (err) {
    lease.release(false);
    throw err;
  }
}

describe('SshPool against a real sshd', () => {
  test('consecutive leases of one target share one connection: one handshake, the rest saved', async () => {
    const pool = new SshPool();
    const logins = sshd.acceptedLogins();
    const ends = [];
    for (let i = 0; i < 6; i++) ends.push(await clientEnd(pool));
    assert.equal(new Set(ends.map((e) => e.end)).size, 1, `one TCP connection: ${ends.map((e) => e.end).join(', ')}`);
    assert.deepEqual(
      ends.map((e) => e.reused),
      [false, true, true, true, true, true],
    );
    assert.equal(sshd.acceptedLogins() - logins, 1, 'sshd accepted one login');
    assert.deepEqual({ ...pool.stats(), idle: undefined }, { handshakes: 1, reused: 5, dropped: 0, expired: 0, idle: undefined, leased: 0 });
    pool.closeIdle();
    assert.equal(pool.stats().idle, 0);
  });

  test('a dropped connection is noticed and re-opened (the host key checked again); an unhealthy release is never reused', async () => {
    const pool = new SshPool();
    const first = await clientEnd(pool);
    const logins = sshd.acceptedLogins();
    assert.ok((await sshd.dropConnections()) >= 1);
    // The pool's idle session sees its connection end (TCP reset by the dying sshd process).
    for (let i = 0; i < 50 && pool.stats().idle > 0; i++) {
      const lease = await pool.acquire(sshd.target({ label: 'pool-test' }));
      // Either the pool noticed the drop already (a new connection), or not yet: then the exec fails and the
      // holder reports it — in neither case is a dead session handed out twice.
      if (lease.reused) {
        await assert.rejects(lease.session.exec('true'));
        lease.release(false);
        break;
      }
      lease.release(true);
      break;
    }
    const second = await clientEnd(pool);
    assert.notEqual(second.end, first.end, 'a new TCP connection');
    assert.ok(sshd.acceptedLogins() > logins, 'sshd accepted a new login');
    assert.ok(pool.stats().dropped >= 1, JSON.stringify(pool.stats()));

    // A holder that saw an error drops the session: the next lease opens a new connection.
    const bad = await pool.acquire(sshd.target({ label: 'pool-test' }));
    assert.equal(bad.reused, true);
    bad.release(false);
    assert.equal(bad.session.closed, true);
    const third = await clientEnd(pool);
    assert.equal(third.reused, false);
    assert.notEqual(third.end, second.end);
    pool.closeIdle();
  });

  test('never cached trust: another pinned key, user, port or label is another session, and a wrong pin is refused on the wire', async () => {
    const pool = new SshPool();
    await clientEnd(pool, 'a');
    const other = await clientEnd(pool, 'b');
    assert.equal(other.reused, false, 'another label (server id) gets its own connection');
    const wrongPin = sshd.target({ label: 'a', hostKey: 'SHA256:' + 'A'.repeat(43) });
    assert.notEqual(poolKey(wrongPin), poolKey(sshd.target({ label: 'a' })));
    const logins = sshd.acceptedLogins();
    await assert.rejects(pool.acquire(wrongPin), (err: unknown) => err instanceof HostKeyMismatchError);
    assert.equal(sshd.acceptedLogins(), logins, 'no login with a wrong pin, although a session to the host sits idle');
    assert.deepEqual([pool.stats().idle, pool.stats().handshakes], [2, 2]);
    pool.closeIdle();
  });

  test('bounded: idle sessions close after the idle timeout, beyond maxIdle the longest idle go first, and too old ones are not reused', async () => {
    const pool = new SshPool({ idleTimeoutMs: 2500, maxIdle: 2 });
    await clientEnd(pool, 'x1');
    await clientEnd(pool, 'x2');
    await clientEnd(pool, 'x3');
    assert.equal(pool.stats().idle, 2, 'maxIdle');
    assert.equal(pool.stats().expired, 1);
    assert.equal((await clientEnd(pool, 'x1')).reused, false, 'x1 was the longest idle: evicted');
    await sleep(3000);
    assert.equal(pool.stats().idle, 0, 'idle timeout');
    assert.equal((await clientEnd(pool, 'x2')).reused, false);
    pool.closeIdle();

    const aged = new SshPool({ maxAgeMs: 200 });
    await clientEnd(aged, 'y');
    await sleep(300);
    assert.equal((await clientEnd(aged, 'y')).reused, false, 'older than maxAgeMs: a new connection');
    aged.closeIdle();
    assert.throws(() => new SshPool({ maxIdle: -1 }), /maxIdle/);
    assert.throws(() => new SshPool({ idleTimeoutMs: 0 }), /idleTimeoutMs/);
  });

  test('leases are exclusive: two at once to one host are two connections, both kept for later', async () => {
    const pool = new SshPool();
    const [a, b] = await Promise.all([pool.acquire(sshd.target({ label: 'c' })), pool.acquire(sshd.target({ label: 'c' }))]);
    assert.notEqual(a.session, b.session);
    assert.equal(pool.stats().leased, 2);
    a.release(true);
    b.release(true);
    a.release(false); // idempotent: the second release does nothing
    assert.equal(pool.stats().idle, 2);
    assert.equal(a.session.closed, false);
    pool.closeIdle();
    assert.equal(a.session.closed, true);
  });
});
