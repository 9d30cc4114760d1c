/**
 * The parts of Redfish resources underlay reads, as zod schemas. Unknown properties are dropped; a resource
 * without what we need is an UnexpectedOutputError naming the resource and the missing property, never a crash
 * further down. Links are checked to be plain /redfish/v1 paths before any request follows them.
 */
import { z } from 'zod';
import { UnexpectedOutputError, type ErrorContext } from '../../common/errors';

/** An @odata.id we are willing to request: a path under /redfish/v1 without whitespace, quotes or `..`. */
export const ODataId = z
  .string()
  .regex(/^\/redfish\/v1(?:\/[A-Za-z0-9._~:@!$&'()*+,;=%-]+)*\/?$/, { message: 'must be a /redfish/v1/... path' })
  .refine((p) => !p.split('/').includes('..'), { message: 'must not contain ..' });

export const Link = z.object({ '@odata.id': ODataId });
const optionalString = z
  .string()
  .nullish()
  .transform((v) => v ?? undefined);

export const ServiceRoot = z.object({
  RedfishVersion: z.string().optional(),
  Systems: Link,
  Managers: Link.optional(),
  SessionService: Link.optional(),
  Links: z.object({ Sessions: Link.optional() }).optional(),
});

export const Collection = z.object({
  Members: z.array(Link).max(1024),
});

export const ResetAction = z.object({
  target: ODataId,
  'ResetType@Redfish.AllowableValues': z.array(z.string()).optional(),
  '@Redfish.ActionInfo': ODataId.optional(),
});

export const ComputerSystem = z.object({
  '@odata.id': ODataId,
  Id: z.string(),
  Name: z.string().optional(),
  PowerState: optionalString,
  Boot: z
    .object({
      BootSourceOverrideTarget: optionalString,
      BootSourceOverrideEnabled: optionalString,
      BootSourceOverrideMode: optionalString,
      'BootSourceOverrideTarget@Redfish.AllowableValues': z.array(z.string()).optional(),
    })
    .optional(),
  Actions: z.object({ '#ComputerSystem.Reset': ResetAction }),
  EthernetInterfaces: Link.optional(),
  VirtualMedia: Link.optional(),
  Links: z.object({ ManagedBy: z.array(Link).optional() }).optional(),
});

export const ActionInfo = z.object({
  Parameters: z.array(z.object({ Name: z.string(), AllowableValues: z.array(z.string()).optional() })).default([]),
});

export const EthernetInterface = z.object({
  '@odata.id': ODataId,
  Id: z.string(),
  Name: z.string().optional(),
  MACAddress: optionalString,
  PermanentMACAddress: optionalString,
  LinkStatus: optionalString,
  SpeedMbps: z
    .number()
    .nullish()
    .transform((v) => v ?? undefined),
});

export const Manager = z.object({
  '@odata.id': ODataId.optional(),
  VirtualMedia: Link.optional(),
});

const ActionTarget = z.object({ target: ODataId });
export const VirtualMedia = z.object({
  '@odata.id': ODataId,
  Id: z.string(),
  MediaTypes: z.array(z.string()).default([]),
  Image: optionalString,
  Inserted: z
    .boolean()
    .nullish()
    .transform((v) => v ?? undefined),
  WriteProtected: z
    .boolean()
    .nullish()
    .transform((v) => v ?? undefined),
  /** Whether the BMC verifies the TLS certificate of the image's server (Redfish 2021.1+), against `Certificates`. */
  VerifyCertificate: z
    .boolean()
    .nullish()
    .transform((v) => v ?? undefined),
  Certificates: Link.optional(),
  Actions: z
    .object({
      '#VirtualMedia.InsertMedia': ActionTarget.optional(),
      '#VirtualMedia.EjectMedia': ActionTarget.optional(),
    })
    .optional(),
});

export const Certificate = z.object({
  '@odata.id': ODataId,
  CertificateString: z
    .string()
    .max(64 * 1024)
    .optional(),
  CertificateType: z.string().optional(),
});

export const Task = z.object({
  TaskState: z.string().optional(),
  TaskStatus: z.string().optional(),
  PercentComplete: z.number().optional(),
  Messages: z.array(z.object({ Message: z.string().optional(), MessageId: z.string().optional() })).optional(),
});

export type ComputerSystemT = z.output<typeof ComputerSystem>;
export type EthernetInterfaceT = z.output<typeof EthernetInterface>;
export type VirtualMediaT = z.output<typeof VirtualMedia>;

/** Parses a resource, or throws UnexpectedOutputError naming it and the first bad properties. */
export function parseResource<S extends z.ZodType>(schema: S, body: unknown, what: string, ctx: ErrorContext): z.output<S> {
  const r = schema.safeParse(body);
  if (r.success) return r.data;
  const issues = r.error.issues
    .slice(0, 5)
    .map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`)
    .join('; ');
  throw new UnexpectedOutputError(`${what} is not the Redfish resource expected`, { ...ctx, observed: issues });
}
