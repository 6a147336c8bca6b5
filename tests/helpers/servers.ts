// Starting local servers for tests without leaking them: shared by the global setup and the infra tests.
import { freePort, isPortRace, PORT_RACE_TRIES, PortInUseError } from '../../infra/services.js';

/**
 * Starts a server on a free port, again on fresh ports when another process took one first (PORT_RACE_TRIES): taken
 * before the server bound it (its log says so), or before the start's own check of it (two servers starting side by
 * side, one binding a port the other had just found free).
 */
export async function onFreePorts<T>(start: (port: number) => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await start(await freePort());
    } catch (err) {
      if (attempt >= PORT_RACE_TRIES || !(isPortRace(err) || err instanceof PortInUseError)) throw err;
    }
  }
}

/** Starts servers side by side; when one fails, stops the others that started and throws why. */
export async function startAll<T extends readonly { stop(): Promise<unknown> }[]>(
  starts: {
    [K in keyof T]: Promise<T[K]>;
  },
): Promise<T> {
  const results = await Promise.allSettled(starts);
  const reasons = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
  if (reasons.length > 0) {
    await Promise.all(results.map((r) => (r.status === 'fulfilled' ? r.value.stop() : undefined)));
    throw reasons.length === 1 ? reasons[0] : new AggregateError(reasons, 'could not start the test servers');
  }
  return results.map((r) => (r as PromiseFulfilledResult<unknown>).value) as unknown as T;
}
