/**
 * "Is ESXi up?" asked of the host itself: its vSphere API (hostd, behind `/sdk` on 443) answers
 * RetrieveServiceContent — no login needed — over TLS pinned to the certificate the kickstart installed. The answer
 * carries the product: `about.apiType` is `HostAgent` on an ESXi host (`VirtualCenter` on vCenter), and
 * `about.version` / `about.build` say what was installed.
 *
 * Three outcomes, kept apart because they mean different things to the install step:
 *   - answers: the pinned certificate, and an API answer (with its product);
 *   - down: nothing accepts the connection, or it drops, or the API does not answer yet (hostd starting);
 *   - untrusted: something answers TLS with another certificate — not the host the kickstart made.
 */
import { HostKeyMismatchError, UnderlayError } from '../../common/errors';
import { SoapClient, xml } from '../../transports/soap';
import type { CertificatePin } from '../../transports/pinned-tls';
import { VIM_VERSION } from './client';
import { ServiceContentSchema, parseWith } from './schema';

export interface HostApiTarget {
  address: string;
  port: number;
  pin: CertificatePin;
  /** Server id, for errors. */
  label: string;
}

export interface HostProduct {
  apiType: string;
  version: string;
  build: string;
  fullName: string;
}

export type HostApiAnswer = { state: 'answers'; product: HostProduct } | { state: 'down'; reason: string } | { state: 'untrusted'; reason: string };

/** One RetrieveServiceContent, bounded by `timeoutMs`. Configuration errors (an unreadable pin file) are thrown. */
export async function probeHostApi(t: HostApiTarget, timeoutMs: number): Promise<HostApiAnswer> {
  const soap = await SoapClient.open(
    { host: t.address, port: t.port, path: '/sdk', pin: t.pin, soapAction: `urn:vim25/${VIM_VERSION}`, label: t.label },
    { timeoutMs, maxBodyBytes: 1024 * 1024 },
  );
  try {
    const res = await soap.call(
      'RetrieveServiceContent',
      xml`<RetrieveServiceContent xmlns="urn:vim25"><_this type="ServiceInstance">ServiceInstance</_this></RetrieveServiceContent>`,
    );
    const sc = parseWith(ServiceContentSchema, res.returnval, 'RetrieveServiceContent', t.label);
    return {
      state: 'answers',
      product: { apiType: sc.about.apiType ?? '', version: sc.about.version ?? '', build: sc.about.build ?? '', fullName: sc.about.fullName },
    };
  } catch (e) {
    if (e instanceof HostKeyMismatchError) return { state: 'untrusted', reason: String(e.context.observed ?? 'another certificate') };
    if (e instanceof UnderlayError && e.name !== 'InvalidSpecError') return { state: 'down', reason: `${e.name}: ${e.message.split(';')[0]}` };
    throw e;
  } finally {
    soap.close();
  }
}

/** What the host says it is, in one line: `VMware ESXi 8.0.3 build-24022510 (HostAgent)`. */
export function describeProduct(p: HostProduct): string {
  return `${p.fullName} (${p.apiType || 'no apiType'})`;
}
