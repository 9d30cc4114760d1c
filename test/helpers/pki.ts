/**
 * A throw-away PKI for TLS tests, made by Debian's openssl (arguments passed as-is, no shell, nothing downloaded):
 * a CA, a server certificate for 127.0.0.1 / localhost signed by it, and client certificates signed by it.
 * EC P-256 keys in PKCS#8 and X.509 v3 extensions, so both OpenSSL (Node, grpc-js) and rustls (the worker's
 * Rust core) accept them.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

export interface CertFiles {
  cert: string;
  key: string;
}

export interface Ca extends CertFiles {
  name: string;
  /** A leaf certificate signed by this CA: `server` (SAN IP:127.0.0.1, DNS:localhost) or `client`. */
  issue(kind: 'server' | 'client', cn: string): Promise<CertFiles>;
}

export interface Pki {
  dir: string;
  /** A new CA (self-signed, 1 day). */
  ca(name: string): Promise<Ca>;
  remove(): Promise<void>;
}

async function openssl(args: string[]): Promise<void> {
  await execFileP('openssl', args);
}

async function newKey(path: string): Promise<void> {
  await openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', path]);
}

export async function makePki(): Promise<Pki> {
  const dir = await mkdtemp(join(tmpdir(), 'underlay-pki-'));
  let serial = 0;
  return {
    dir,
    remove: () => rm(dir, { recursive: true, force: true }),
    async ca(name) {
      const key = join(dir, `${name}.key`);
      const cert = join(dir, `${name}.pem`);
      await newKey(key);
      await openssl([
        'req',
        '-x509',
        '-new',
        '-key',
        key,
        '-out',
        cert,
        '-days',
        '1',
        '-subj',
        `/CN=${name}`,
        '-addext',
        'basicConstraints=critical,CA:TRUE',
        '-addext',
        'keyUsage=critical,keyCertSign,cRLSign',
      ]);
      return {
        name,
        cert,
        key,
        async issue(kind, cn) {
          const base = join(dir, `${name}-${kind}-${cn}-${++serial}`);
          const leaf = { key: `${base}.key`, cert: `${base}.pem` };
          const ext = `${base}.ext`;
          await newKey(leaf.key);
          await writeFile(
            ext,
            [
              'basicConstraints=critical,CA:FALSE',
              'keyUsage=critical,digitalSignature',
              kind === 'server' ? 'extendedKeyUsage=serverAuth' : 'extendedKeyUsage=clientAuth',
              ...(kind === 'server' ? ['subjectAltName=IP:127.0.0.1,DNS:localhost'] : []),
              'subjectKeyIdentifier=hash',
              'authorityKeyIdentifier=keyid',
            ].join('\n') + '\n',
          );
          await openssl(['req', '-new', '-key', leaf.key, '-out', `${base}.csr`, '-subj', `/CN=${cn}`]);
          await openssl([
            'x509',
            '-req',
            '-in',
            `${base}.csr`,
            '-CA',
            cert,
            '-CAkey',
            key,
            '-set_serial',
            String(1000 + serial),
            '-days',
            '1',
            '-extfile',
            ext,
            '-out',
            leaf.cert,
          ]);
          return leaf;
        },
      };
    },
  };
}
