// Following runs through outages of the Temporal service: the client's calls fail while the server restarts, but the
// runs (workflows) go on, and a command that follows them attaches again once the server answers.
import { setTimeout as sleep } from 'node:timers/promises';
import { failureMessage, isServiceOutage } from './trajectories.js';

/** How long a command waits for the Temporal server to answer again before it stops following its runs. */
export const OUTAGE_WAIT_MS = 10 * 60_000;

/** A command's outages of the Temporal server: when the current one began, and when its last failure came. */
export interface OutageClock {
  since?: number;
  lastAt?: number;
}

export interface OutageTimes {
  /** How long an outage may last before the command stops following. */
  limitMs: number;
  /** A failure this long after the last one begins a new outage (told again, timed anew). */
  quietMs: number;
  firstPauseMs: number;
  maxPauseMs: number;
}
export const OUTAGE_TIMES: OutageTimes = {
  limitMs: OUTAGE_WAIT_MS,
  quietMs: 90_000,
  firstPauseMs: 1_000,
  maxPauseMs: 30_000,
};

/**
 * A run, attached to again (`run(true)`) through outages of the Temporal service (a restart, a network drop): those
 * fail the client's calls, not the run, whose workflow goes on. (A batch that counted its question as failed would
 * give its slot to the next question while it still ran, and a long outage would fail the whole queue.) An outage is
 * timed for all of a command's runs together (`clock`), in wall time (the client's own retries included), from its
 * first failure; past `limitMs` the command stops following with `giveUp`'s error, the runs going on in Temporal. The
 * pauses hold the process, and end when `signal` aborts.
 */
export async function throughOutages<T>(
  run: (again: boolean) => Promise<T>,
  clock: OutageClock,
  onOutage: (err: unknown) => void,
  signal: AbortSignal,
  times: OutageTimes,
  giveUp: (waited: string, err: unknown) => Error,
): Promise<T> {
  for (let again = false, pauseMs = times.firstPauseMs; ; again = true) {
    try {
      return await run(again);
    } catch (err) {
      if (!isServiceOutage(err)) throw err;
      const now = performance.now();
      if (clock.since === undefined || clock.lastAt === undefined || now - clock.lastAt > times.quietMs) {
        clock.since = now;
        onOutage(err);
      }
      clock.lastAt = now;
      if (now - clock.since >= times.limitMs)
        throw giveUp(
          times.limitMs >= 60_000
            ? `${Math.round(times.limitMs / 60_000)} minutes`
            : `${times.limitMs / 1000} s`,
          err,
        );
      await sleep(pauseMs, undefined, { signal }).catch(() => {});
      signal.throwIfAborted();
      pauseMs = Math.min(2 * pauseMs, times.maxPauseMs);
    }
  }
}

/**
 * One run followed through outages of the Temporal service (throughOutages), as a batch's questions are: `follow` (attach and wait for
 * the result) is called again once the service answers, each outage is told once through `waiting`, and past
 * OUTAGE_WAIT_MS the following stops with an error that says the run goes on. Without this a restart of the server
 * ended `muse run` with a bare gRPC error while its run went on.
 */
export function followThroughOutages<T>(
  what: string,
  id: string,
  follow: () => Promise<T>,
  waiting: (why: string) => void,
): Promise<T> {
  return throughOutages(
    follow,
    {},
    (err) =>
      waiting(
        `the Temporal server does not answer (${failureMessage(err)}); ${what} ${id} goes on in Temporal, and is ` +
          `followed again once the server answers (for ${OUTAGE_WAIT_MS / 60_000} minutes at most)`,
      ),
    new AbortController().signal,
    OUTAGE_TIMES,
    (waited, err) =>
      new Error(
        `the Temporal server has not answered for ${waited} (${failureMessage(err)}); ${what} ${id} goes on in ` +
          `Temporal: \`muse status ${id}\` once the server is back`,
      ),
  );
}
