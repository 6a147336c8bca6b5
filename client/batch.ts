// `muse batch`: every question of a JSONL file (the reference's {"question", "answer"} format) through
// ParallelMuse with a concurrency limit. Results are appended as they finish; a re-run with the same options
// skips questions already in the output, re-attaches to workflows still running and retries failed ones.

import { createHash } from 'node:crypto';
import {
  accessSync,
  appendFileSync,
  constants,
  existsSync,
  mkdirSync,
  readFileSync,
  realpathSync,
  statSync,
  truncateSync,
} from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { type Client, WorkflowNotFoundError } from '@temporalio/client';
import { z } from 'zod';
import { GoldAnswerSchema, type ParallelMuseSpec, type ParallelMuseSpecInput } from '../agent/job.js';
import { noteModel } from '../agent/trajectory.js';
import { type MuseConfig, readNamedFile, refuseDirectory } from '../common/config.js';
import { formatZodError } from '../common/errors.js';
import { appendFileDurablySync, replaceFileSync } from '../common/files.js';
import { tryLock } from '../infra/file-lock.js';
import type { ParallelMuseResult } from '../workflows/parallel-muse.js';
import type { StepTimeouts } from '../workflows/trajectory.js';
import { OUTAGE_TIMES, OUTAGE_WAIT_MS, type OutageClock, throughOutages } from './outages.js';
import {
  parseParallelMuseSpec,
  questionWorkflowId,
  type RunQuestionOptions,
  runIdentity,
  specHash,
  startParallelMuse,
  workflowExists,
} from './parallel-muse.js';
import { failureMessage, isServiceOutage } from './trajectories.js';

export const BatchLineSchema = z
  .object({
    question: z.string().trim().min(1),
    // Datasets often hold numeric answers ("answer": 1907), and null for a question without one; scoring compares
    // text.
    answer: z
      .union([GoldAnswerSchema, z.number()], {
        error: 'answer must be text or a number (leave it out, or null, when there is none)',
      })
      // JSON has already changed a number past 2^53 (and one JavaScript writes with an exponent, from 1e21): its text
      // would not be the dataset's. Decimals are taken as JavaScript writes them ('2.50' reads as '2.5').
      .refine(
        (a) =>
          typeof a !== 'number' ||
          Number.isSafeInteger(a) ||
          (Math.abs(a) < 1e15 && !String(a).includes('e')),
        {
          error: 'answer: a number this large or this precise is changed by JSON; give it as text',
        },
      )
      .transform((a) => (typeof a === 'number' ? String(a) : a))
      .nullish()
      .transform((a) => a ?? undefined),
  })
  .passthrough();

export interface BatchLineError {
  line: number;
  error: string;
}

export interface BatchItem {
  line: number;
  question: string;
  answer?: string;
  /**
   * Earlier lines with the same question, bad ones whose question reads included: fixing a bad line then gives no
   * other line its run (see assignWorkflowIds).
   */
  occurrence: number;
  /** The line's other fields (a dataset's own id, its metadata), copied into the question's result line. */
  fields?: Record<string, unknown>;
}

export function readBatchFile(path: string): { items: BatchItem[]; errors: BatchLineError[] } {
  const items: BatchItem[] = [];
  const errors: BatchLineError[] = [];
  const seen = new Map<string, number>();
  const occurrenceOf = (question: string) => {
    const n = seen.get(question) ?? 0;
    seen.set(question, n + 1);
    return n;
  };
  readNamedFile('the questions file', path)
    .toString('utf8')
    .split('\n')
    .forEach((raw, i) => {
      const line = raw.trim();
      if (!line) return;
      let value: unknown;
      try {
        value = JSON.parse(line);
      } catch (err) {
        errors.push({ line: i + 1, error: `line ${i + 1} is not valid JSON: ${(err as Error).message}` });
        return;
      }
      const parsed = BatchLineSchema.safeParse(value);
      if (!parsed.success) {
        errors.push({ line: i + 1, error: `line ${i + 1}: ${formatZodError(parsed.error)}` });
        const question = BatchLineSchema.shape.question.safeParse(
          (value as { question?: unknown })?.question,
        );
        if (question.success) occurrenceOf(question.data);
      } else {
        const { question, answer, ...fields } = parsed.data;
        items.push({
          line: i + 1,
          question,
          ...(answer !== undefined ? { answer: String(answer) } : {}),
          occurrence: occurrenceOf(question),
          ...(Object.keys(fields).length > 0 ? { fields } : {}),
        });
      }
    });
  return { items, errors };
}

/**
 * The shared spec (every option, no per-question field), validated, and its hash (see runIdentity): what result lines
 * record. `withLimit` is the hash earlier versions gave it, counting maxConcurrentRollouts: a results file they wrote
 * carries that one where the limit was not the default.
 */
export function sharedBatchSpec(spec: BatchOptions['spec']): {
  spec: ParallelMuseSpec;
  hash: string;
  withLimit: string;
} {
  // Validated once with a stand-in question: a budget that cannot fit fails before any question starts.
  const full = parseParallelMuseSpec({ ...spec, trajectory: { ...spec.trajectory, question: 'validation' } });
  const { question: _q, answer: _a, ...trajectory } = full.trajectory;
  const shared = { ...full, trajectory };
  return {
    spec: full,
    hash: specHash(runIdentity(shared)).slice(0, 16),
    withLimit: specHash(shared).slice(0, 16),
  };
}

/**
 * The spec hash the batch's workflow ids are made with: the one its results file carries, else the shared spec's. A
 * batch an earlier version began with a maxConcurrentRollouts other than the default goes on under the ids it gave
 * (see sharedBatchSpec's withLimit): found by its results, or before any was written by its first question's run (it
 * started its questions in file order).
 */
export async function idsHash(
  client: Client,
  shared: { hash: string; withLimit: string },
  fromResults: string | undefined,
  jobId: string,
  first: Pick<BatchItem, 'question' | 'occurrence'> | undefined,
): Promise<string> {
  if (fromResults !== undefined) return fromResults;
  if (shared.withLimit === shared.hash || first === undefined) return shared.hash;
  const earlier = questionWorkflowId(jobId, shared.withLimit, first.question, first.occurrence);
  return (await workflowExists(client, earlier)) ? shared.withLimit : shared.hash;
}

/** Workflow ids by question text and occurrence among identical questions (BatchItem; see questionWorkflowId). */
export function assignWorkflowIds<T extends Pick<BatchItem, 'question' | 'occurrence'>>(
  items: T[],
  jobId: string,
  sharedHash: string,
): (T & { workflowId: string })[] {
  return items.map((item) => ({
    ...item,
    workflowId: questionWorkflowId(jobId, sharedHash, item.question, item.occurrence),
  }));
}

export class BatchError extends Error {
  override name = 'BatchError';
}

/**
 * Takes `<output>.lock` so two copies of a batch never append the same questions; returns its release. The lock also
 * goes when the process exits; one left by a dead process on this host is taken over.
 */
export function lockResults(output: string): () => void {
  // One lock per file, however it is named (a symlinked directory, a relative path).
  const lock = `${canonicalPath(output)}.lock`;
  const got = tryLock(lock);
  if (got.acquired) return got.release;
  if (got.takingOver)
    throw new BatchError(
      `another muse batch is taking over the lock of ${output} (--out); try again, or delete ${lock}.takeover if no ` +
        'other muse batch is running',
    );
  const who = got.holder ? ` (pid ${got.holder.pid} on ${got.holder.host})` : '';
  throw new BatchError(
    `another muse batch${who} is writing ${output} (--out); wait for it to finish, or delete ${lock} if that process is gone`,
  );
}

/** What a results file already holds. */
export interface ResultsFile {
  /**
   * The questions with a result line, by workflow id, with what the line records: the answer it was judged against
   * (null: none) and the verdict (null: none).
   */
  done: Map<string, { answer: string | null; correct: boolean | null }>;
  /** The job its results belong to; undefined for an empty file or one of the older format. */
  job?: string;
  /** The spec hash its lines carry, which the batch goes on under; undefined when none does. */
  spec?: string;
}

/**
 * Reads the results of an earlier run into this file, refusing one written with other options or, when `jobId` is
 * given, for another job: its questions' workflow ids would not match, so every question would run and be written
 * again. Lines without a spec hash come from the older, line-numbered ids: they match no id now, so those questions
 * run once more. A last line cut short by a crash is removed.
 */
export function openResults(
  output: string,
  sharedHash: string,
  jobId?: string,
  /** Taken as this spec's too (sharedBatchSpec's withLimit). */
  earlierHash = sharedHash,
): ResultsFile {
  const done: ResultsFile['done'] = new Map();
  if (!existsSync(output)) return { done };
  let job = jobId;
  let spec: string | undefined;
  const bytes = readNamedFile('--out', output);
  const text = bytes.toString('utf8');
  const lines = text.split('\n');
  let lastCutShort = false;
  // Not a file of results (the questions file, notes): appending to it would mix results into it.
  const notResults = (i: number) =>
    new BatchError(
      `${output} (--out) is not a muse batch results file: line ${i + 1} is not a result; pass a results file or a new path`,
    );
  for (const [i, raw] of lines.entries()) {
    // A crash can leave NUL bytes where an append had not reached the disk (ext4, XFS after a power loss), and an
    // editor a byte-order mark: neither makes the file someone else's.
    const withNul = (i === 0 ? raw.replace(/^\uFEFF/, '') : raw).trim();
    const line = withNul.replace(/\0+/g, '');
    if (!line.trim()) {
      // Nothing but NULs: an append that never reached the disk.
      if (line !== withNul) lastCutShort = i === lines.length - 1;
      continue;
    }
    let parsed: { workflowId?: string; spec?: string; job?: string; answer?: unknown; correct?: unknown };
    try {
      parsed = JSON.parse(line);
    } catch {
      // Cut short by a crash: the start of a result line. That question's workflow result is simply fetched again.
      // (Earlier versions kept such a line and appended after it, so one may also sit mid-file.) Anything else is
      // someone else's file.
      if (!line.startsWith(RESULT_LINE_START) && !RESULT_LINE_START.startsWith(line)) throw notResults(i);
      lastCutShort = i === lines.length - 1;
      continue;
    }
    if (typeof parsed !== 'object' || parsed === null || typeof parsed.workflowId !== 'string')
      throw notResults(i);
    if (parsed.spec === sharedHash || parsed.spec === earlierHash) spec ??= parsed.spec;
    else if (parsed.spec !== undefined)
      throw new BatchError(
        `${output} (--out) holds results of this batch run with other options (spec ${parsed.spec}, now ${sharedHash}); ` +
          're-run with the same options to continue it, or pass another --out',
      );
    if (parsed.job !== undefined) {
      if (job !== undefined && parsed.job !== job)
        throw new BatchError(
          `${output} (--out) holds results of job ${parsed.job}, not ${job}; re-run without --job (or with --job ` +
            `${parsed.job}) to continue it, or pass another --out`,
        );
      job = parsed.job;
    }
    done.set(parsed.workflowId, {
      answer: typeof parsed.answer === 'string' ? parsed.answer : null,
      correct: typeof parsed.correct === 'boolean' ? parsed.correct : null,
    });
  }
  if (text.length && !text.endsWith('\n')) {
    // A last line cut short by a crash is removed (its question's result is fetched again), so the file stays
    // JSON lines for whatever reads it; a whole line merely missing its newline gets one.
    // Cut at the last newline's byte offset: bytes an earlier cut left undecodable mid-file would shift one
    // worked out on the decoded text.
    if (lastCutShort) truncateSync(output, bytes.lastIndexOf(0x0a) + 1);
    else appendFileSync(output, '\n');
  }
  return { done, ...(job !== undefined ? { job } : {}), ...(spec !== undefined ? { spec } : {}) };
}

/**
 * The batch's job: the one asked for, else the one its results record, else the one recorded beside them in
 * `<out>.job` when an earlier run started (it may have written no result yet while its questions' workflows run under
 * that job's ids), else one derived from the path. Recorded in `<out>.job` for the next run.
 */
export function batchJobId(output: string, asked?: string, fromResults?: string): string {
  const sidecar = `${output}.job`;
  const recorded = existsSync(sidecar) ? readFileSync(sidecar, 'utf8').trim() || undefined : undefined;
  const jobId = asked ?? fromResults ?? recorded ?? defaultJobId(output);
  if (jobId !== recorded) replaceFileSync(sidecar, `${jobId}\n`);
  return jobId;
}

/** The job id of a results file with none recorded yet: derived from its absolute path. */
export function defaultJobId(output: string): string {
  return `batch-${createHash('sha256').update(canonicalPath(output)).digest('hex').slice(0, 10)}`;
}

/** The file's absolute path with symlinks resolved: its own when it exists, else its directory's. */
function canonicalPath(path: string): string {
  const absolute = resolve(path);
  try {
    return realpathSync(absolute);
  } catch {
    try {
      return join(realpathSync(dirname(absolute)), basename(absolute));
    } catch {
      return absolute;
    }
  }
}

/** How every result line begins (resultLine's first key), so a line cut short by a crash is told from other text. */
const RESULT_LINE_START = '{"job":';

/**
 * One output line per question: the prediction, the aggregator, per-rollout records in the reference's shape,
 * accounting; with the input line it ran from and that line's other fields (`fields`), so results join back to the
 * dataset.
 */
export function resultLine(
  jobId: string,
  workflowId: string,
  sharedHash: string,
  r: ParallelMuseResult,
  from?: Pick<BatchItem, 'line' | 'fields'>,
) {
  return {
    job: jobId,
    workflowId,
    spec: sharedHash,
    ...(from ? { line: from.line, ...(from.fields ? { fields: from.fields } : {}) } : {}),
    question: r.question,
    answer: r.answer ?? null,
    prediction: r.prediction,
    aggregator: r.aggregator,
    correct: r.correct ?? null,
    judge: r.judge ?? null,
    outcomes: r.outcomes,
    plan: r.plan,
    accounting: r.accounting,
    compression: r.compression ?? null,
    models: r.models ?? [],
    excluded: r.excluded,
    rollouts: r.rollouts.map((ro) => ({
      question: r.question,
      answer: r.answer ?? null,
      prediction: ro.prediction,
      rollout: ro.rolloutId,
      termination: ro.termination,
      rollout_type: ro.rollout_type,
      lineage: ro.lineage,
      usage: ro.usage,
      uncertainty: Number.isFinite(ro.uncertainty) ? ro.uncertainty : null,
      ...(ro.error ? { error: ro.error } : {}),
    })),
  };
}

export interface BatchOptions {
  input: string;
  output: string;
  /** Default: the job the results file records (a moved file continues its job), else one derived from its path. */
  jobId?: string;
  concurrency: number;
  spec: Omit<ParallelMuseSpecInput, 'trajectory'> & {
    trajectory: Omit<ParallelMuseSpecInput['trajectory'], 'question'>;
  };
  timeouts?: StepTimeouts;
  /** Once the job is known, before any question starts. */
  onStart?: (e: { jobId: string; total: number }) => void;
  /** When the Temporal service is out and the questions under way wait for it (said once per outage). */
  onOutage?: (why: string) => void;
  /**
   * When a question starts, is found already done, ends, or fails (`failure`: its line and why; the summary lists
   * them again); `running` are the questions under way.
   */
  onProgress?: (e: {
    event: 'started' | 'skipped' | 'completed' | 'failed';
    done: number;
    total: number;
    skipped: number;
    failed: number;
    running: number;
    /** The question's run: given when it starts, ends or fails. */
    workflowId?: string;
    last?: string;
    failure?: { line: number; error: string };
  }) => void;
}

export interface BatchSummary {
  jobId: string;
  total: number;
  completed: number;
  skipped: number;
  failed: { line: number; error: string }[];
  badLines: BatchLineError[];
  /** Over every question of the input with a verdict in the results file, this run's and earlier ones'. */
  correct: number;
  scored: number;
  /**
   * Questions with an answer to score against but no verdict (an LLM judge's unusable, or the primary aggregator's
   * calls failed): out of the accuracy.
   */
  unscored: number;
  /**
   * Finished questions whose answer in the input is not the one their result was judged against (the answer was
   * corrected after they ran): left out of the accuracy.
   */
  answerChanged: { line: number; judgedAgainst: string | null; now: string }[];
  /** What generated this run's completed questions (ParallelMuseResult.models). */
  models: string[];
}

/**
 * The batch's questions, read before anything starts; refuses a results file that is the questions file, or one
 * that cannot be written (before any question runs, and named by its flag: not as a bare EROFS on a lock file).
 */
export function readBatchQuestions(input: string, output: string): ReturnType<typeof readBatchFile> {
  if (resolve(output) === resolve(input))
    throw new BatchError(`--out ${output} is the questions file; results go to a file of their own`);
  const questions = readBatchFile(input);
  checkResultsPath(output);
  return questions;
}

function checkResultsPath(output: string): void {
  refuseDirectory('--out', output);
  // The directory, where the lock and the job id are written; a finished results file may be read-only.
  resultsFileSetup(output, () => {
    mkdirSync(dirname(output), { recursive: true });
    accessSync(dirname(output), constants.W_OK);
  });
}

/** Runs what sets up the results file and the files beside it, its failures named as --out's. */
function resultsFileSetup<T>(output: string, setup: () => T): T {
  try {
    return setup();
  } catch (err) {
    if (err instanceof BatchError) throw err;
    throw new BatchError(`--out: cannot write ${output}: ${(err as Error).message}`);
  }
}

export async function runBatch(client: Client, cfg: MuseConfig, o: BatchOptions): Promise<BatchSummary> {
  const shared = sharedBatchSpec(o.spec);
  const { items, errors } = readBatchQuestions(o.input, o.output);
  const unlock = resultsFileSetup(o.output, () => lockResults(o.output));
  try {
    const results = openResults(o.output, shared.hash, o.jobId, shared.withLimit);
    const { done } = results;
    const jobId = resultsFileSetup(o.output, () => batchJobId(o.output, o.jobId, results.job));
    const hash = await idsHash(client, shared, results.spec, jobId, items[0]);
    const summary: BatchSummary = {
      jobId,
      total: items.length,
      completed: 0,
      skipped: 0,
      failed: [],
      badLines: errors,
      correct: 0,
      scored: 0,
      unscored: 0,
      answerChanged: [],
      models: [],
    };
    const queue = assignWorkflowIds(items, jobId, hash);
    // A finished results file may be read-only; one with questions still to write must not be, found now rather than
    // when the first of them ends, maybe an hour in.
    if (queue.some((item) => !done.has(item.workflowId)) && existsSync(o.output))
      resultsFileSetup(o.output, () => accessSync(o.output, constants.W_OK));
    o.onStart?.({ jobId, total: items.length });
    let running = 0;
    const report = (
      event: 'started' | 'skipped' | 'completed' | 'failed',
      more: { workflowId?: string; last?: string; failure?: { line: number; error: string } } = {},
    ) =>
      o.onProgress?.({
        event,
        done: summary.completed + summary.skipped + summary.failed.length,
        total: summary.total,
        skipped: summary.skipped,
        failed: summary.failed.length,
        running,
        ...more,
      });
    // A result that cannot be written (a full disk) stops the batch at once: every later one would be lost the same
    // way. So does any other error a worker meets. Questions still under way go on in Temporal, as on Ctrl-C; a re-run
    // collects them. Once stopped, no worker writes again: the lock is released while their questions still run.
    let writeError: Error | undefined;
    let stopped: unknown;
    let stop: (err: unknown) => void = () => {};
    // Ends the pauses of questions waiting out an outage, so none starts or attaches again once the batch stopped.
    const stopping = new AbortController();
    const halted = new Promise<never>((_, reject) => {
      stop = (err) => {
        stopped ??= err;
        stopping.abort(err);
        reject(err);
      };
    });
    // A verdict counts only when it was reached against the answer the input gives now.
    const score = (
      item: { line: number; answer?: string },
      judgedAgainst: string | null,
      correct: boolean | null,
    ) => {
      if (item.answer === undefined) return;
      if (judgedAgainst !== item.answer) {
        summary.answerChanged.push({ line: item.line, judgedAgainst, now: item.answer });
        return;
      }
      // No verdict (the judge's unusable, the aggregator's calls failed) leaves the question unscored.
      if (typeof correct !== 'boolean') {
        summary.unscored++;
        return;
      }
      summary.scored++;
      if (correct) summary.correct++;
    };
    // Taken by index: shift() would copy the rest of the queue for every question, quadratic in a large input.
    let next = 0;
    const outages: OutageClock = {};
    const worker = async () => {
      for (let item = queue[next++]; item && stopped === undefined; item = queue[next++]) {
        const recorded = done.get(item.workflowId);
        if (recorded) {
          summary.skipped++;
          score(item, recorded.answer, recorded.correct);
          report('skipped');
          continue;
        }
        let result: ParallelMuseResult;
        running++;
        report('started', { workflowId: item.workflowId });
        try {
          const question = item;
          const spec = {
            ...o.spec,
            trajectory: {
              ...o.spec.trajectory,
              question: question.question,
              ...(question.answer !== undefined ? { answer: question.answer } : {}),
            },
          };
          const runOptions = {
            workflowId: question.workflowId,
            jobId,
            acceptOtherAnswer: true,
            ...(o.timeouts ? { timeouts: o.timeouts } : {}),
          };
          result = await throughOutages(
            questionRun(client, cfg, spec, runOptions),
            outages,
            (err) =>
              o.onOutage?.(
                `the Temporal server does not answer (${failureMessage(err)}); the questions under way are waited ` +
                  `for (they go on in Temporal), for ${OUTAGE_WAIT_MS / 60_000} minutes at most`,
              ),
            stopping.signal,
            OUTAGE_TIMES,
            batchStopped,
          );
        } catch (err) {
          running--;
          // The batch's own end (an outage past its limit, a stop), not this question's failure.
          if (err instanceof BatchError || stopped !== undefined) throw err;
          const failure = { line: item.line, error: failureMessage(err) };
          summary.failed.push(failure);
          report('failed', { workflowId: item.workflowId, failure });
          continue;
        }
        running--;
        if (stopped !== undefined) return;
        let size: number | undefined;
        try {
          size = statSync(o.output, { throwIfNoEntry: false })?.size ?? 0;
          appendFileDurablySync(
            o.output,
            `${JSON.stringify(resultLine(jobId, item.workflowId, hash, result, item))}\n`,
          );
        } catch (err) {
          // Part of the line may have been written: taken back, so the next result is not glued onto it.
          try {
            if (size !== undefined) truncateSync(o.output, size);
          } catch {
            // Not a file (a directory in its place), or gone: nothing to take back.
          }
          writeError = err as Error;
          stop(writeError);
          return;
        }
        summary.completed++;
        summary.models = (result.models ?? []).reduce(noteModel, summary.models);
        score(item, result.answer ?? null, result.correct ?? null);
        report('completed', { workflowId: item.workflowId, last: result.prediction ?? '(no answer)' });
      }
    };
    halted.catch(() => {});
    try {
      await Promise.race([
        Promise.all(Array.from({ length: Math.max(1, o.concurrency) }, () => worker().catch(stop))),
        halted,
      ]);
    } catch (err) {
      if (writeError === undefined || err !== writeError) throw err;
      throw new BatchError(
        `cannot write ${o.output} (--out): ${writeError.message}; the batch stopped. Questions that finished, and those ` +
          'still under way, are kept by Temporal and written when you re-run it',
      );
    }
    return summary;
  } finally {
    unlock();
  }
}

/** Ends a batch whose Temporal server has not answered for `waited` (see throughOutages). */
export function batchStopped(waited: string, err: unknown): Error {
  return new BatchError(
    `the Temporal server has not answered for ${waited} (${failureMessage(err)}): the batch stopped. Its questions ` +
      'under way go on in Temporal; re-run it once the server is back to collect them',
  );
}

/**
 * A question's run for throughOutages: starts or attaches to its workflow and waits for its result. Called again after
 * an outage, once this process has started or attached to the run, a run that ended meanwhile other than completed is
 * reported as failed, not started anew (its id takes a new run after a failed one: a re-run of the batch retries it,
 * this one does not). Before then (the start never reached the server) the latest run under the id may be an earlier
 * batch's failed one, which is this run's to retry.
 */
export function questionRun(
  client: Client,
  cfg: MuseConfig,
  spec: ParallelMuseSpecInput,
  options: RunQuestionOptions,
): (again: boolean) => Promise<ParallelMuseResult> {
  let attached = false;
  return async (again) => {
    if (again && attached) await failIfEnded(client, options.workflowId);
    const { handle } = await startParallelMuse(client, cfg, spec, options);
    attached = true;
    return handle.result();
  };
}

/**
 * Throws the failure of a question's workflow that ended other than completed (failed, timed out, terminated,
 * cancelled); nothing while it runs, completed, or was never started.
 */
async function failIfEnded(client: Client, workflowId: string): Promise<void> {
  const handle = client.workflow.getHandle(workflowId);
  let status: string;
  try {
    status = (await handle.describe()).status.name;
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return;
    throw err;
  }
  if (status !== 'RUNNING' && status !== 'COMPLETED') await handle.result();
}
