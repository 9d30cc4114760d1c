/**
 * Narrowing the spec to the part a step owns, once, with one typed error when it is missing or of another kind —
 * instead of `spec.bond!` and a "kind must be X" check in every step.
 */
import { InvalidSpecError, UnsupportedPlatformError } from '../common/errors';
import type { AttachSpec, HypervisorSpec, ServerSpec } from '../spec/server';
import type { StepName } from '../steps';

type Section = 'bond' | 'sriov' | 'dpdk' | 'attach';

/** The spec's `section`, which the step's definition says it owns (the registry runs it only when present). */
export function section<K extends Section>(spec: ServerSpec, key: K, step: StepName): NonNullable<ServerSpec[K]> {
  const v = spec[key];
  if (v === undefined || v === null) {
    throw new InvalidSpecError(`the ${step} step needs the spec's ${key} section`, [{ path: key, message: `required by the ${step} step` }]);
  }
  return v as NonNullable<ServerSpec[K]>;
}

/** The attach of one of `kinds` (the implementation's), or a typed error naming attach.kind. */
export function attachOfKind<const K extends AttachSpec['kind']>(
  spec: ServerSpec,
  kinds: readonly K[],
  step: StepName = 'attach',
): Extract<AttachSpec, { kind: K }> {
  const a = section(spec, 'attach', step);
  if (!(kinds as readonly string[]).includes(a.kind)) {
    throw new UnsupportedPlatformError(`this ${spec.hypervisor.kind} ${step} implementation handles attach kind ${kinds.join(' or ')}`, {
      host: spec.id,
      step,
      field: 'attach.kind',
      expected: kinds.join('|'),
      observed: a.kind,
    });
  }
  return a as Extract<AttachSpec, { kind: K }>;
}

/** The hypervisor section when it is of `kind` (the implementation's), or a typed error naming hypervisor.kind. */
export function hypervisorOfKind<const K extends HypervisorSpec['kind']>(
  spec: ServerSpec,
  kind: K,
  step: StepName = 'hypervisor',
): Extract<HypervisorSpec, { kind: K }> {
  const h = spec.hypervisor;
  if (h.kind !== kind) {
    throw new UnsupportedPlatformError(`this ${step} implementation installs ${kind}`, {
      host: spec.id,
      step,
      field: 'hypervisor.kind',
      expected: kind,
      observed: h.kind,
    });
  }
  return h as Extract<HypervisorSpec, { kind: K }>;
}
