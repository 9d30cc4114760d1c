/**
 * A bounded pool of SSH sessions, so the consecutive step activities of one host on one worker share one
 * connection instead of paying a handshake each (≈ 3 s on the lab's TCG guests).
 *
 * Trust is never cached: a session is only reused for exactly the target it was opened for — address, port, user,
 * pinned host key, credential reference and label — and every new connection goes through SshSession.connect,
 * which checks the host key again. A lease is exclusive (one activity at a time per session). A session goes back
 * to the pool only when its holder says it is healthy; any error, a closed connection or an age beyond `maxAgeMs`
 * drops it. Idle sessions close after `idleTimeoutMs`, and at most `maxIdle` are kept (the oldest go first).
 */
import { SshSession, type ConnectOptions, type SshTarget } from './ssh';

export interface SshPoolOptions {
  /** Idle sessions kept, all targets together. Default 64; 0 turns reuse off. */
  maxIdle?: number;
  /** An idle session is closed after this long. Default 60 s. */
  idleTimeoutMs?: number;
  /** A session opened longer ago than this is not reused. Default 15 min. */
  maxAgeMs?: number;
  /** Connect options of new sessions. */
  connect?: ConnectOptions;
}

export interface SshLease {
  readonly session: SshSession;
  /** True when the session came from the pool (no handshake). */
  readonly reused: boolean;
  /** Hand the session back: kept for the next lease when healthy, closed otherwise. Idempotent. */
  release(healthy: boolean): void;
}

export interface SshPoolStats {
  /** New connections opened (each a full handshake with its host-key check). */
  handshakes: number;
  /** Leases served from the pool: the handshakes saved. */
  reused: number;
  /** Sessions closed because their holder reported an error, or the connection was gone. */
  dropped: number;
  /** Sessions closed idle (timeout, the pool bound, their age). */
  expired: number;
  idle: number;
  leased: number;
}

interface Idle {
  session: SshSession;
  openedAt: number;
  idleSince: number;
  timer: NodeJS.Timeout;
}

const DEFAULTS = { maxIdle: 64, idleTimeoutMs: 60_000, maxAgeMs: 15 * 60_000 };
const MAX_IDLE_LIMIT = 4096;

/** The reuse key: everything that decides who we talk to and as whom (a credential *reference*, never a secret). */
export function poolKey(t: SshTarget): string {
  return JSON.stringify([t.host, t.port, t.user, t.hostKey, t.credentials, t.label]);
}

export class SshPool {
  readonly #opts: typeof DEFAULTS & { connect?: ConnectOptions };
  /** Idle sessions per key, oldest first. */
  readonly #idle = new Map<string, Idle[]>();
  #leased = 0;
  readonly #stats = { handshakes: 0, reused: 0, dropped: 0, expired: 0 };

  constructor(opts: SshPoolOptions = {}) {
    const maxIdle = opts.maxIdle ?? DEFAULTS.maxIdle;
    const idleTimeoutMs = opts.idleTimeoutMs ?? DEFAULTS.idleTimeoutMs;
    const maxAgeMs = opts.maxAgeMs ?? DEFAULTS.maxAgeMs;
    if (!Number.isInteger(maxIdle) || maxIdle < 0 || maxIdle > MAX_IDLE_LIMIT) throw new RangeError(`maxIdle: an integer 0–${MAX_IDLE_LIMIT}`);
    for (const [k, v] of Object.entries({ idleTimeoutMs, maxAgeMs })) {
      if (!Number.isFinite(v) || v < 1 || v > 24 * 3600_000) throw new RangeError(`${k}: 1 ms … 24 h`);
    }
    this.#opts = { maxIdle, idleTimeoutMs, maxAgeMs, ...(opts.connect ? { connect: opts.connect } : {}) };
  }

  stats(): SshPoolStats {
    let idle = 0;
    for (const list of this.#idle.values()) idle += list.length;
    return { ...this.#stats, idle, leased: this.#leased };
  }

  /** A session to `target`: an idle one opened for exactly this target, or a new connection (host key checked). */
  async acquire(target: SshTarget, connect?: ConnectOptions): Promise<SshLease> {
    const key = poolKey(target);
    const list = this.#idle.get(key);
    while (list?.length) {
      const entry = list.pop()!;
      clearTimeout(entry.timer);
      if (!list.length) this.#idle.delete(key);
      const gone = entry.session.closed;
      if (gone || Date.now() - entry.openedAt > this.#opts.maxAgeMs) {
        entry.session.close();
        this.#stats[gone ? 'dropped' : 'expired']++;
        continue;
      }
      this.#stats.reused++;
      return this.#lease(key, entry.session, entry.openedAt, true);
    }
    const session = await SshSession.connect(target, { ...this.#opts.connect, ...connect });
    this.#stats.handshakes++;
    return this.#lease(key, session, Date.now(), false);
  }

  /**
   * Closes every idle session now (a worker that stops; a test that ends): idle sessions would otherwise keep the
   * process alive until their idle timeout. Leased sessions are not touched; the pool stays usable.
   */
  closeIdle(): void {
    for (const list of this.#idle.values()) for (const e of list) this.#expire(e);
    this.#idle.clear();
  }

  #lease(key: string, session: SshSession, openedAt: number, reused: boolean): SshLease {
    this.#leased++;
    let released = false;
    return {
      session,
      reused,
      release: (healthy: boolean) => {
        if (released) return;
        released = true;
        this.#leased--;
        this.#giveBack(key, session, openedAt, healthy);
      },
    };
  }

  #giveBack(key: string, session: SshSession, openedAt: number, healthy: boolean): void {
    if (!healthy || session.closed) {
      session.close();
      this.#stats.dropped++;
      return;
    }
    if (this.#opts.maxIdle === 0 || Date.now() - openedAt > this.#opts.maxAgeMs) {
      session.close();
      this.#stats.expired++;
      return;
    }
    const entry: Idle = { session, openedAt, idleSince: Date.now(), timer: undefined as unknown as NodeJS.Timeout };
    entry.timer = setTimeout(() => this.#remove(key, entry), this.#opts.idleTimeoutMs);
    entry.timer.unref();
    const list = this.#idle.get(key) ?? [];
    list.push(entry);
    this.#idle.set(key, list);
    this.#bound();
  }

  /** Keeps at most maxIdle idle sessions: the longest idle go first. */
  #bound(): void {
    let total = 0;
    for (const list of this.#idle.values()) total += list.length;
    while (total > this.#opts.maxIdle) {
      let oldest: { key: string; entry: Idle } | undefined;
      for (const [key, list] of this.#idle) if (list[0] && (!oldest || list[0].idleSince < oldest.entry.idleSince)) oldest = { key, entry: list[0] };
      if (!oldest) return;
      this.#remove(oldest.key, oldest.entry);
      total--;
    }
  }

  #remove(key: string, entry: Idle): void {
    const list = this.#idle.get(key);
    const i = list?.indexOf(entry) ?? -1;
    if (list && i >= 0) {
      list.splice(i, 1);
      if (!list.length) this.#idle.delete(key);
    }
    this.#expire(entry);
  }

  #expire(entry: Idle): void {
    clearTimeout(entry.timer);
    entry.session.close();
    this.#stats.expired++;
  }
}
