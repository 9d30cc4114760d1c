/**
 * Temporal connection settings from the standard env config (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE,
 * TEMPORAL_API_KEY, TEMPORAL_TLS*, TEMPORAL_PROFILE / config file). Nothing set → the local dev server.
 * Payload encryption from UNDERLAY_CODEC_KEYS_FILE or UNDERLAY_CODEC_KEY(_ID) (codec-keys.ts); nothing set → off.
 */
import { Client, Connection } from '@temporalio/client';
import type { DataConverter } from '@temporalio/common';
import { loadClientConnectConfig } from '@temporalio/envconfig';
import { NativeConnection } from '@temporalio/worker';
import { DEFAULT_TEMPORAL_ADDRESS } from '../common/config';
import { dataConverterFromEnv, loadCodecKeys } from './codec-keys';

export function temporalSettings() {
  const cfg = loadClientConnectConfig();
  return {
    connectionOptions: { ...cfg.connectionOptions, address: cfg.connectionOptions.address ?? DEFAULT_TEMPORAL_ADDRESS },
    namespace: cfg.namespace ?? 'default',
  };
}

/** A client; with payload encryption when configured (the workers must use the same keys). */
export async function connectClient(dataConverter: DataConverter | undefined = dataConverterFromEnv()): Promise<Client> {
  const { connectionOptions, namespace } = temporalSettings();
  const connection = await Connection.connect({ ...connectionOptions, apiKey: connectionOptions.apiKey }).catch((err: unknown) => {
    throw unreachable(connectionOptions.address, err);
  });
  return new Client({ connection, namespace, ...(dataConverter ? { dataConverter } : {}) });
}

/** Runs `fn` with a client and closes its connection afterwards, whatever `fn` did. */
export async function withClient<T>(fn: (client: Client) => Promise<T>): Promise<T> {
  const client = await connectClient();
  try {
    return await fn(client);
  } finally {
    await client.connection.close();
  }
}

export async function connectWorker(): Promise<{ connection: NativeConnection; namespace: string }> {
  loadCodecKeys(); // a broken encryption setting fails here, before connecting (createWorker uses it)
  const { connectionOptions, namespace } = temporalSettings();
  const connection = await NativeConnection.connect(connectionOptions).catch((err: unknown) => {
    throw unreachable(connectionOptions.address, err);
  });
  return { connection, namespace };
}

/** "Failed to connect before the deadline" alone does not say where: name the address and how to change it. */
function unreachable(address: string, err: unknown): Error {
  const why = err instanceof Error ? err.message : String(err);
  return new Error(
    `cannot reach Temporal at ${address} (${why}); set TEMPORAL_ADDRESS or a TEMPORAL_PROFILE, or start the dev server: scripts/dev-server.sh start`,
    { cause: err },
  );
}
