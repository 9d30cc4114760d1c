/**
 * Trust pinned to one self-signed certificate, for peers whose certificate the operator holds as a file: the
 * installed ESXi host (the certificate its kickstart installed). The file is checked against the spec's
 * fingerprint when it is loaded (a wrong file is refused), then it is the only trust anchor of the connection
 * (`ca`), and `checkServerIdentity` compares the presented certificate's hash again. No connection is made without
 * chain verification: a peer presenting any other certificate fails the handshake, before anything is sent.
 *
 * Also the SHA-1 thumbprint vCenter wants for the same certificate (HostConnectSpec.sslThumbprint).
 */
import { readScopedFile } from './secret-scope';
import { X509Certificate, createHash, timingSafeEqual } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';
import { InvalidSpecError } from '../common/errors';
import { CERT_FINGERPRINT_RE, certificateFingerprint } from './http';

export interface CertificatePin {
  certFile: string;
  /** `sha256/` + base64 of the SHA-256 of the DER certificate. */
  fingerprint: string;
}

/** The error code a pinned identity check fails with (the TLS layers map it to HostKeyMismatchError). */
export const NOT_PINNED_CODE = 'ERR_UNDERLAY_CERT_NOT_PINNED';

function same(a: string, b: string): boolean {
  return timingSafeEqual(createHash('sha256').update(a).digest(), createHash('sha256').update(b).digest());
}

/** Reads the pinned certificate; refuses a file that is not the fingerprint, or that is CA-issued. */
export async function loadPinnedCertificate(pin: CertificatePin, host: string, field: string): Promise<X509Certificate> {
  if (!CERT_FINGERPRINT_RE.test(pin.fingerprint)) {
    throw new InvalidSpecError('pinned certificate fingerprint is not sha256/<base64>', [], { host, field: `${field}.fingerprint` });
  }
  // Within the worker's credentials directory, a regular file, size-capped (secret-scope.ts).
  const pem = readScopedFile(pin.certFile, { kind: 'certificate', what: 'pinned certificate' }, { host, field: `${field}.certFile` });
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(pem);
  } catch {
    throw new InvalidSpecError(`cannot read the pinned certificate ${pin.certFile} (not a PEM or DER certificate)`, [], { host, field: `${field}.certFile` });
  }
  const inFile = certificateFingerprint(x509.raw);
  if (!same(inFile, pin.fingerprint)) {
    throw new InvalidSpecError(`the certificate in ${pin.certFile} is not the pinned one (its SHA-256 is ${inFile}; the spec pins ${pin.fingerprint})`, [], {
      host,
      field: `${field}.fingerprint`,
    });
  }
  if (!x509.checkIssued(x509)) {
    throw new InvalidSpecError(`the certificate in ${pin.certFile} is CA-issued (${x509.issuer.replace(/\n/g, ', ')}): pin a self-signed one`, [], {
      host,
      field: `${field}.certFile`,
    });
  }
  return x509;
}

/** TLS options that trust exactly this certificate (chain verified against it alone, hash checked again). */
export function pinnedTlsOptions(x509: X509Certificate, fingerprint: string) {
  return {
    ca: x509.toString(),
    rejectUnauthorized: true,
    // The host name is not checked: the pin is stronger, and the certificate need not name the address used.
    checkServerIdentity: (_host: string, peer: PeerCertificate): Error | undefined => {
      const fp = certificateFingerprint(peer.raw);
      if (same(fp, fingerprint)) return undefined;
      return Object.assign(new Error(`certificate ${fp} is not the pinned one`), { code: NOT_PINNED_CODE });
    },
  };
}

/** vCenter's form of a certificate's identity: SHA-1 of the DER, upper-case hex pairs joined by colons. */
export function sha1Thumbprint(der: Buffer): string {
  return createHash('sha1').update(der).digest('hex').toUpperCase().match(/../g)!.join(':');
}
