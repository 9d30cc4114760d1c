/**
 * Every credential reference a spec carries, with the path of its field: what the worker checks against its
 * secret scope (src/transports/secret-scope.ts) before an activity connects anywhere.
 */
import type { ServerSpec } from './server';

export interface SecretReference {
  /** Spec path, e.g. `hypervisor.bmc.credentials.passwordEnv`. */
  field: string;
  /** `env`: an env var holding a secret; `agent-socket-env`: an env var holding the ssh-agent socket path. */
  kind: 'env' | 'agent-socket-env' | 'file';
  /** The variable name or the file path, as the spec wrote it. */
  name: string;
}

type Loose = Record<string, unknown>;

function credentialRefs(prefix: string, cred: Loose | undefined, out: SecretReference[]): void {
  if (!cred) return;
  const add = (key: string, kind: SecretReference['kind']) => {
    const v = cred[key];
    if (typeof v === 'string') out.push({ field: `${prefix}.${key}`, kind, name: v });
  };
  add('privateKeyFile', 'file');
  add('privateKeyEnv', 'env');
  add('passphraseEnv', 'env');
  add('agentSocketEnv', 'agent-socket-env');
  add('usernameEnv', 'env');
  add('passwordEnv', 'env');
  add('file', 'file');
}

/** The credential, key, password and certificate references of a (validated) spec. */
export function secretReferences(spec: ServerSpec): SecretReference[] {
  const out: SecretReference[] = [];
  credentialRefs('management.credentials', spec.management.credentials as Loose, out);
  if (spec.hypervisor.kind === 'esxi') {
    const bmc = spec.hypervisor.bmc;
    credentialRefs('hypervisor.bmc.credentials', bmc.credentials as Loose, out);
    if ('caFile' in bmc.tls) out.push({ field: 'hypervisor.bmc.tls.caFile', kind: 'file', name: bmc.tls.caFile });
    else out.push({ field: 'hypervisor.bmc.tls.certFile', kind: 'file', name: bmc.tls.certFile });
    const h = spec.hypervisor;
    out.push(
      { field: 'hypervisor.rootPassword.file', kind: 'file', name: h.rootPassword.file },
      { field: 'hypervisor.hostCertificate.certFile', kind: 'file', name: h.hostCertificate.certFile },
      { field: 'hypervisor.hostCertificate.keyFile', kind: 'file', name: h.hostCertificate.keyFile },
    );
  }
  if (spec.attach?.kind === 'vds') {
    const vc = spec.attach.vcenter;
    credentialRefs('attach.vcenter.credentials', vc.credentials as Loose, out);
    out.push({ field: 'attach.vcenter.caFile', kind: 'file', name: vc.caFile });
  }
  return out;
}
