/**
 * OpenSSH-compatible host key fingerprints and their comparison.
 *
 * Kept free of ssh2 so specs, tests and tools can compute/compare fingerprints without opening a connection.
 */
import { createHash, timingSafeEqual } from 'node:crypto';

/** Same shape as the spec's `HostKeyFingerprint`: what `ssh-keygen -lf -E sha256` prints. */
export const FINGERPRINT_RE = /^SHA256:[A-Za-z0-9+/]{43}$/;

/**
 * `SHA256:` + unpadded base64 of SHA-256 over the raw public key blob (the SSH wire encoding, i.e. the base64
 * field of a `.pub` line decoded) — byte-for-byte what OpenSSH prints.
 */
export function sha256Fingerprint(keyBlob: Buffer): string {
  return 'SHA256:' + createHash('sha256').update(keyBlob).digest('base64').replace(/=+$/, '');
}

/**
 * Constant-time equality of two fingerprints. Both sides are hashed first so the comparison runs over equal-length
 * buffers (timingSafeEqual throws on unequal lengths, and an early length check would itself leak timing).
 */
export function fingerprintsEqual(a: string, b: string): boolean {
  const ha = createHash('sha256').update(a, 'utf8').digest();
  const hb = createHash('sha256').update(b, 'utf8').digest();
  return timingSafeEqual(ha, hb);
}
