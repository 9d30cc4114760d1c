/**
 * The failure converter used when payload encryption is on (`failureConverterPath` of the data converter): a
 * failure's message and stack trace travel as an encoded payload, so the codec encrypts them — they name hosts,
 * addresses and fields. Loaded by the client, the worker and (bundled) the workflow sandbox: keep it pure.
 */
import { DefaultFailureConverter } from '@temporalio/common';

export const failureConverter = new DefaultFailureConverter({ encodeCommonAttributes: true });
