// Starting, watching and reading trajectories from outside Temporal (CLI, tests, benchmarks).
import { randomUUID } from 'node:crypto';
import type {
  Client,
  WorkflowExecutionDescription,
  WorkflowHandle,
  WorkflowHandleWithFirstExecutionRunId,
} from '@temporalio/client';
import { type Payload, type Timestamp, WorkflowIdReusePolicy } from '@temporalio/common';
import { optionalTsToMs } from '@temporalio/common/lib/time.js';
import proto from '@temporalio/proto';
import type { WaitingDetails } from '../activities/heartbeat.js';
import { clipText } from '../agent/clip.js';
import {
  samplingKeysProblem,
  type TrajectorySpec,
  type TrajectorySpecInput,
  TrajectorySpecSchema,
  trajectorySpecProblem,
} from '../agent/job.js';
import type { TrajectoryProgress, TrajectoryResult } from '../agent/trajectory.js';
import type { MuseConfig } from '../common/config.js';
import { causeChainMessage, causeCodes, formatZodError } from '../common/errors.js';
import { withCallSignal } from '../common/temporal.js';
import { progressQuery, type StepTimeouts, type trajectory } from '../workflows/trajectory.js';

export class JobSpecError extends Error {
  override name = 'JobSpecError';
}

/**
 * What to tell a user about a failure: Temporal's client errors say only "Workflow execution failed" and keep the
 * reason in their causes, so the causes are named too; a start refused because the id is taken names the id.
 */
export function failureMessage(err: unknown): string {
  const e = err as { name?: string; workflowId?: string } | null;
  if (e?.name === 'WorkflowExecutionAlreadyStartedError' && e.workflowId)
    return `a workflow with id '${e.workflowId}' is already running or kept: see \`muse status ${e.workflowId}\`, or pass another id`;
  return causeChainMessage(err);
}

/**
 * Whether a client call failed for an outage of the Temporal service or of the connection to it (a restart, a
 * network drop, an overloaded frontend), a gRPC status anywhere in its causes (the client wraps a call's error in a
 * ServiceError), which says nothing of the workflow it was about: that goes on, and can be attached to again once
 * the service answers. The client's own retries have been spent by then.
 */
export function isServiceOutage(err: unknown): boolean {
  return causeCodes(err).some((code) => OUTAGE_CODES.has(code));
}
/** gRPC's UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED and ABORTED. */
const OUTAGE_CODES = new Set([14, 4, 8, 10]);

export function parseTrajectorySpec(input: unknown): TrajectorySpec {
  const parsed = TrajectorySpecSchema.safeParse(input);
  if (!parsed.success) throw new JobSpecError(`invalid job spec: ${formatZodError(parsed.error)}`);
  const keysProblem = samplingKeysProblem(input, 'sampling');
  if (keysProblem) throw new JobSpecError(`invalid job spec: ${keysProblem}`);
  const p = trajectorySpecProblem(parsed.data);
  if (p) throw new JobSpecError(`invalid job spec: ${p.field}: ${p.problem}`);
  return parsed.data;
}

export interface StartTrajectoryOptions {
  workflowId?: string;
  jobId?: string;
  timeouts?: StepTimeouts;
}

export async function startTrajectory(
  client: Client,
  cfg: MuseConfig,
  specInput: TrajectorySpecInput,
  opts: StartTrajectoryOptions = {},
): Promise<WorkflowHandleWithFirstExecutionRunId<typeof trajectory>> {
  const spec = parseTrajectorySpec(specInput);
  const workflowId = opts.workflowId ?? `traj-${randomUUID().slice(0, 12)}`;
  const start = (workflowIdReusePolicy: WorkflowIdReusePolicy) =>
    client.workflow.start<typeof trajectory>('trajectory', {
      taskQueue: cfg.temporal.taskQueue,
      workflowId,
      workflowIdReusePolicy,
      // Nothing branches from a trajectory run on its own: its per-step branching facts would only ride in every
      // continue-as-new and in the result.
      args: [
        {
          spec,
          jobId: opts.jobId ?? workflowId,
          keepBranchable: false,
          ...(opts.timeouts ? { timeouts: opts.timeouts } : {}),
        },
      ],
      // Whose content the run uses: `muse content delete` refuses a job with runs still going (runningRunsOfJob).
      memo: { jobId: opts.jobId ?? workflowId },
    });
  // An id given again names the trajectory that ran under it (muse export, muse status): one that answered or ran
  // out of turns is kept, one that failed (as Temporal sees it, or ended in error or cancelled) is run anew.
  try {
    return await start(WorkflowIdReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY);
  } catch (err) {
    if ((err as Error)?.name !== 'WorkflowExecutionAlreadyStartedError') throw err;
    const handle = client.workflow.getHandle<typeof trajectory>(workflowId);
    if ((await handle.describe()).status.name !== 'COMPLETED') throw err;
    const { termination } = await handle.result();
    if (termination !== 'error' && termination !== 'cancelled') throw err;
    return await start(WorkflowIdReusePolicy.ALLOW_DUPLICATE);
  }
}

export async function queryProgress(handle: WorkflowHandle): Promise<TrajectoryProgress | undefined> {
  try {
    return await handle.query(progressQuery);
  } catch {
    return undefined; // not started yet, or between runs
  }
}

/**
 * Progress as `queryProgress` reads it, waiting at most `timeoutMs`: a query is answered by a worker, and with none
 * polling the task queue the server holds it for most of a minute. Says why there is none when it has none.
 */
export async function queryProgressWithin(
  handle: WorkflowHandle,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<{ progress: TrajectoryProgress } | { unanswered: string; noWorker?: true }> {
  const deadline = Date.now() + timeoutMs;
  const query = () => handle.client.withDeadline(deadline, () => handle.query(progressQuery));
  try {
    return { progress: await (signal ? withCallSignal(handle.client, signal, query) : query()) };
  } catch (err) {
    if (!(Date.now() >= deadline || deadlineExceeded(err)))
      return { unanswered: `no progress to show (${causeChainMessage(err)})` };
    // Unanswered for as long as a worker may take: no worker polling, or no server answering at all (a restart),
    // which is not the worker's doing.
    const down = await serverUnreachable(handle.client, signal);
    return down !== undefined
      ? { unanswered: `the Temporal server does not answer (${down})` }
      : {
          unanswered: `no worker answered within ${timeoutMs / 1000} s: is a rollout worker running on its task queue?`,
          noWorker: true,
        };
  }
}

/** Why the Temporal server does not answer a call that needs no worker; undefined when it answers. */
async function serverUnreachable(
  client: WorkflowHandle['client'],
  signal?: AbortSignal,
): Promise<string | undefined> {
  const ask = () => client.withDeadline(Date.now() + 3_000, () => client.workflowService.getSystemInfo({}));
  try {
    await (signal ? withCallSignal(client, signal, ask) : ask());
    return undefined;
  } catch (err) {
    return isServiceOutage(err) ? failureMessage(err) : undefined;
  }
}

/**
 * Whether any worker has polled the task queue for workflow tasks lately (the server keeps a few minutes of pollers);
 * undefined when the server could not say.
 */
export async function workflowWorkerPolling(
  client: Client,
  cfg: MuseConfig,
  signal?: AbortSignal,
): Promise<boolean | undefined> {
  const describe = () =>
    client.withDeadline(Date.now() + 5_000, () =>
      client.workflowService.describeTaskQueue({
        namespace: cfg.temporal.namespace,
        taskQueue: { name: cfg.temporal.taskQueue },
        taskQueueType: proto.temporal.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
      }),
    );
  try {
    const res = await (signal ? withCallSignal(client, signal, describe) : describe());
    return (res.pollers?.length ?? 0) > 0;
  } catch {
    return undefined;
  }
}

/**
 * Says, through `say`, when no worker polls the task queue `afterMs` after a run was started, and again whenever the
 * workers go missing later (checked every `everyMs`: a batch runs for hours, and its workers can die in the middle),
 * once per time they are missing: a question waits on its result without progress to show, and would otherwise wait
 * without a word. The server keeps listing a poller for a while after it last polled, so workers that died are told
 * that much later. Returns the cancel, which stops a check in flight and settles once it has ended: awaited before the
 * connection closes, no call is left for the client's retry interceptor to send again on a closed channel.
 */
export function sayIfNoWorker(
  client: Client,
  cfg: MuseConfig,
  say: (why: string) => void,
  afterMs = 15_000,
  everyMs = 60_000,
) {
  let told = false;
  return everyUntilCancelled(
    async (signal) => {
      const polling = await workflowWorkerPolling(client, cfg, signal);
      // Cancelled while the server was asked: the run has ended, and nothing is to be said.
      if (signal.aborted) return;
      if (polling === false && !told)
        say(
          `no worker is polling task queue '${cfg.temporal.taskQueue}': is a rollout worker (muse worker) running?`,
        );
      if (polling !== undefined) told = !polling;
    },
    afterMs,
    everyMs,
  );
}

/**
 * Says, through `say`, which steps of the watched workflow (and of its rollouts) keep failing, checked `afterMs` after the
 * start and every `everyMs` after: a step retries for as long as its cause lasts (a pool nobody serves, a misspelled
 * `--pool`, every member down), and the run would otherwise wait without a word while `muse status` knows why. A step
 * is told again when its failure changes, or a minute after it was last told; steps failing alike (a question's
 * rollouts on one pool) are told as one. Returns the cancel, as sayIfNoWorker.
 */
export function sayIfStepsRetry(
  client: Client,
  /** The workflow to watch, asked before each check: a batch watches the oldest question under way. */
  watched: () => WorkflowHandle | undefined,
  say: (why: string) => void,
  afterMs = 15_000,
  everyMs = 15_000,
) {
  // When each step and failure was last told, keyed by both: a question's rollouts failing alike are told as one.
  const told = new Map<string, number>();
  return everyUntilCancelled(
    async (signal) => {
      const handle = watched();
      if (!handle) return;
      const retrying = await withCallSignal(client, signal, async () =>
        stepsInRetry(client, await handle.describe(), WATCHED_CHILDREN),
      ).catch(() => []);
      if (signal.aborted) return;
      // Keyed by step and failure: the first of each, and how many more fail alike.
      const alike = new Map<string, { first: StepInRetry; failure: string; more: number }>();
      for (const r of retrying) {
        // What its worker says now, if anything, over how its last attempt failed.
        const failure = r.waiting ?? r.lastFailure ?? 'no failure recorded';
        const key = `${r.activity}\n${failure}`;
        const seen = alike.get(key);
        if (seen) seen.more++;
        else alike.set(key, { first: r, failure, more: 0 });
      }
      for (const [key, { first, failure, more }] of alike) {
        const last = told.get(key);
        if (last !== undefined && Date.now() - last < RETRY_RETOLD_MS) continue;
        told.set(key, Date.now());
        const where = first.workflowId === handle.workflowId ? '' : ` of ${first.workflowId}`;
        const others = more > 0 ? ` (and ${more} more alike)` : '';
        const state =
          first.waitingSince !== undefined
            ? `is waiting (attempt ${first.attempt}, for ${Math.max(0, Math.round((Date.now() - Date.parse(first.waitingSince)) / 1000))} s)`
            : `is being retried (attempt ${first.attempt})`;
        say(`step ${first.activity}${where}${others} ${state}: ${clipText(failure, 400)}`);
      }
    },
    afterMs,
    everyMs,
  );
}
const RETRY_RETOLD_MS = 60_000;
/**
 * Rollouts described per check, of a question's up to 64 under way: a pool nobody serves fails them alike, and the
 * check runs every 15 s for as long as the run lasts (muse status, asked once, describes them all).
 */
const WATCHED_CHILDREN = 8;

/**
 * Runs `check` `afterMs` from now and every `everyMs` after it ends, until the returned cancel is called. The cancel
 * aborts the check in flight and settles once it has ended: awaited before the connection closes, no call is left
 * for the client's retry interceptor to send again on a closed channel.
 */
function everyUntilCancelled(
  check: (signal: AbortSignal) => Promise<void>,
  afterMs: number,
  everyMs: number,
): () => Promise<void> {
  const cancelled = new AbortController();
  let timer: NodeJS.Timeout;
  let inFlight: Promise<void> = Promise.resolve();
  const start = () => {
    inFlight = check(cancelled.signal)
      .catch(() => {})
      .then(() => {
        if (cancelled.signal.aborted) return;
        timer = setTimeout(start, everyMs);
        timer.unref();
      });
  };
  timer = setTimeout(start, afterMs);
  timer.unref();
  return (): Promise<void> => {
    cancelled.abort();
    clearTimeout(timer);
    return inFlight;
  };
}

/** gRPC's DEADLINE_EXCEEDED (status 4) anywhere in the failure's causes: the server may answer it a moment early. */
function deadlineExceeded(err: unknown): boolean {
  return causeCodes(err).includes(4);
}

/** A step of a running workflow that has failed at least once: its next attempt is running or waiting to. */
export interface StepInRetry {
  workflowId: string;
  activity: string;
  attempt: number;
  lastFailure?: string;
  /** Why the attempt under way waits, as the worker running it says now (its NATS connection down, say). */
  waiting?: string;
  /** Since when it waits (ISO time), with `waiting`. */
  waitingSince?: string;
}

/** Child workflows described for their steps in retry; a ParallelMuse question runs a few dozen rollouts at once. */
const MAX_CHILDREN_DESCRIBED = 64;

/**
 * The steps of a running workflow that are in retry, with their attempt and last failure, and those of its running
 * child workflows (a ParallelMuse question's rollouts), so a run waiting on a pool nobody serves (a misspelled
 * name, every member down) says so instead of looking slow.
 */
export async function stepsInRetry(
  client: Client,
  desc: WorkflowExecutionDescription,
  maxChildren = MAX_CHILDREN_DESCRIBED,
): Promise<StepInRetry[]> {
  const own = inRetry(client, desc.workflowId, desc.raw.pendingActivities);
  const children = (desc.raw.pendingChildren ?? []).slice(0, maxChildren);
  const theirs = await Promise.all(
    children.map(async (c) => {
      if (!c.workflowId) return [];
      // The latest run, not the one the parent started: a trajectory continues as new every few hundred steps.
      const d = await client.workflow
        .getHandle(c.workflowId)
        .describe()
        .catch(() => undefined); // ended or gone since the parent was described
      return d ? inRetry(client, c.workflowId, d.raw.pendingActivities) : [];
    }),
  );
  return [...own, ...theirs.flat()];
}

interface PendingActivityLike {
  activityType?: { name?: string | null } | null;
  attempt?: number | null;
  lastFailure?: { message?: string | null } | null;
  state?: number | null;
  heartbeatDetails?: { payloads?: Payload[] | null } | null;
  lastHeartbeatTime?: Timestamp | null;
  lastStartedTime?: Timestamp | null;
}

/** The steps of one workflow that failed before or say, in their heartbeats, why they wait (WaitingDetails). */
function inRetry(
  client: Client,
  workflowId: string,
  pending: readonly PendingActivityLike[] | null | undefined,
): StepInRetry[] {
  return (pending ?? []).flatMap((a) => {
    const waiting = waitingNow(client, a);
    if (!((a.attempt ?? 1) > 1 || a.lastFailure?.message || waiting)) return [];
    return [
      {
        workflowId,
        activity: a.activityType?.name ?? 'unknown',
        attempt: a.attempt ?? 1,
        ...(a.lastFailure?.message ? { lastFailure: a.lastFailure.message } : {}),
        ...(waiting ? { waiting: waiting.waiting, waitingSince: new Date(waiting.since).toISOString() } : {}),
      },
    ];
  });
}

/**
 * Why a step waits, from its heartbeats' details, when they are the running attempt's own: the server keeps an
 * attempt's last details past its end (a worker that died while it waited), where they would hide the failure that
 * followed. Undefined when they say nothing, are an earlier attempt's, or cannot be read.
 */
function waitingNow(client: Client, a: PendingActivityLike): WaitingDetails | undefined {
  const details = a.heartbeatDetails?.payloads?.[0];
  if (!details || a.state !== PENDING_STARTED) return undefined;
  const beatAt = optionalTsToMs(a.lastHeartbeatTime);
  const startedAt = optionalTsToMs(a.lastStartedTime);
  // Strictly after: the server sets an attempt's heartbeat time to its start, beside the last attempt's details.
  if (beatAt === undefined || startedAt === undefined || beatAt <= startedAt) return undefined;
  try {
    const value = client.options.loadedDataConverter.payloadConverter.fromPayload(details);
    const { waiting, since } = (value ?? {}) as Partial<WaitingDetails>;
    return typeof waiting === 'string' && typeof since === 'number' ? { waiting, since } : undefined;
  } catch {
    return undefined;
  }
}
const PENDING_STARTED = proto.temporal.api.enums.v1.PendingActivityState.PENDING_ACTIVITY_STATE_STARTED;

/** Progress queries failing in a row before the follower says why; and the longest pause between them then. */
const FAILED_QUERIES_TOLD = 5;
const MAX_FAILED_QUERY_INTERVAL_MS = 5_000;

/**
 * Polls progress until the trajectory ends; returns its result. `onUnanswered` hears, once, why there is no progress
 * when no worker answers (none running on the task queue), or when queries keep failing (a workflow task failing
 * after a deploy, say), instead of the wait going on without a word; failing queries are asked less often, up to
 * every 5 s, so a worker replaying a long history is not asked four times a second.
 */
export async function followTrajectory(
  handle: WorkflowHandle<typeof trajectory>,
  onProgress: (p: TrajectoryProgress) => void,
  opts: {
    intervalMs?: number;
    unansweredMs?: number;
    onUnanswered?: (why: string) => void;
    /** What has been said already, shared by a caller that follows the run again (after a server outage). */
    told?: { noWorker: boolean; failing: boolean };
  } = {},
): Promise<TrajectoryResult> {
  // Ended with the result: a query then in flight is cancelled.
  const ended = new AbortController();
  // Said once each: that no worker answers, and that queries keep failing for another reason.
  const told = opts.told ?? { noWorker: false, failing: false };
  const result = handle.result().finally(() => ended.abort());
  const intervalMs = opts.intervalMs ?? 250;
  const polling = (async () => {
    let failures = 0;
    while (!ended.signal.aborted) {
      // Longer than a worker's sticky queue timeout (10 s), which a query after a worker restart waits out.
      const p = await queryProgressWithin(handle, opts.unansweredMs ?? 15_000, ended.signal);
      if (ended.signal.aborted) break;
      if ('progress' in p) {
        failures = 0;
        onProgress(p.progress);
      } else {
        failures++;
        const kind = p.noWorker ? 'noWorker' : 'failing';
        if (!told[kind] && (p.noWorker || failures >= FAILED_QUERIES_TOLD)) {
          told[kind] = true;
          opts.onUnanswered?.(p.unanswered);
        }
      }
      const wait =
        failures === 0 ? intervalMs : Math.min(MAX_FAILED_QUERY_INTERVAL_MS, intervalMs * 2 ** failures);
      // Cut short by the result: a command that has it must not sit out a pause of up to 5 s before it exits.
      await Promise.race([new Promise((r) => setTimeout(r, wait).unref()), result.catch(() => {})]);
    }
  })().catch(() => {});
  // The last query ends before the caller may close the connection: one left in flight could fail when the server
  // stops (muse demo stops it next) and be retried by the client's interceptor on a closed channel, which throws
  // from a timer and ends the process.
  return result.finally(() => polling);
}
