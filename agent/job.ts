// Job specs: what a user asks Muse to run. Validated at the trust boundary (CLI, batch files, client
// API) so a bad field is reported by name before any workflow starts. Workflow-safe (zod is pure).
import { z } from 'zod';
import { utf8Length } from './clip.js';
import { contextPolicy, estimateTokens, turnBudgetTokens } from './context.js';

export const ContextPolicySchema = z.enum(['react', 'iterresearch', 'resum']);
export const BranchModeSchema = z.enum(['none', 'all_ppl', 'think_ppl', 'tool_call_ppl', 'mixed_ppl']);
export const AggregatorSchema = z.enum(['compressed', 'majority', 'confidence_weighted', 'min_uncertainty']);

const positiveInt = z.number().int().positive();
/** A pool's name is part of NATS subjects: a dot or space would address other subjects. */
const PoolName = z.string().regex(/^[A-Za-z0-9_-]+$/, 'pool must be letters, digits, _ or -');

/** A model turn's token limit unless the spec says otherwise. */
export const DEFAULT_MAX_TOKENS_PER_TURN = 4096;

export const SamplingSchema = z.object({
  temperature: z.number().min(0).max(2).default(0.85),
  /** k of the top-k logprobs the uncertainty is computed from (reference: 16). */
  /** At least 2: with one alternative every entropy is 0, and no step could be told more uncertain than another. */
  topLogprobs: z.number().int().min(2).max(20).default(16),
  maxTokensPerTurn: positiveInt.max(65_536).default(DEFAULT_MAX_TOKENS_PER_TURN),
});

/**
 * Why a spec's `sampling` holds keys no setting has, naming them at `path`; undefined when it holds none. The schema
 * drops such keys, so a misspelt one (`temprature`) would leave its default in place without a word: the clients
 * refuse them. The workflows' own check of their input (workflows/input.ts) does not, as it let them through before
 * and replays runs started so.
 */
export function samplingKeysProblem(trajectorySpec: unknown, path: string): string | undefined {
  const sampling = (trajectorySpec as { sampling?: unknown } | null | undefined)?.sampling;
  if (!sampling || typeof sampling !== 'object') return undefined;
  const known = Object.keys(SamplingSchema.shape);
  const unknown = Object.keys(sampling).filter((k) => !known.includes(k));
  if (unknown.length === 0) return undefined;
  return `${path}: unknown setting(s) ${unknown.map((k) => `'${k}'`).join(', ')} (known: ${known.join(', ')})`;
}

/** Ground truth: a blank one would score every prediction wrong, and send the LLM judge an empty gold answer. */
export const GoldAnswerSchema = z
  .string()
  .refine((a) => a.trim().length > 0, 'answer must not be empty (leave it out when there is none)');

const ISO_DAY = /^\d{4}-\d{2}-\d{2}$/;

/**
 * Whether a YYYY-MM-DD text names a real day (Date.parse would read 2026-02-30 as March 2); other text is left to the
 * format's own check.
 */
function isCalendarDate(text: string): boolean {
  if (!ISO_DAY.test(text)) return true;
  const [y, m, d] = text.split('-').map(Number) as [number, number, number];
  const day = new Date(0);
  // setUTCFullYear, not Date.UTC: that reads years 0-99 as 1900-1999.
  day.setUTCFullYear(y, m - 1, d);
  return day.getUTCFullYear() === y && day.getUTCMonth() === m - 1 && day.getUTCDate() === d;
}

export const TrajectorySpecSchema = z
  .object({
    question: z.string().trim().min(1, 'question must not be empty'),
    /** Ground truth, when known; used for scoring only, never shown to the model. */
    answer: GoldAnswerSchema.optional(),
    policy: ContextPolicySchema.default('react'),
    maxTurns: positiveInt.max(4096).default(64),
    /** Model context window in tokens: past it the trajectory ends with `max_context` (resum summarises first). */
    contextWindow: positiveInt.min(512).default(131_072),
    /** resum: summarise when the prompt passes this fraction of the window (reference: 0.9). */
    summaryThreshold: z.number().gt(0).lt(1).default(0.9),
    pool: PoolName.default('default'),
    model: z.string().optional(),
    seed: z.number().int().min(0).default(0),
    /**
     * Shown to the model as "Current date: …", as the reference agent's prompt does. Given, not read from a clock: a
     * replayed, retried or branched step sends the same prompt (and hits the same cache).
     */
    date: z
      .string()
      .regex(ISO_DAY, 'date must be YYYY-MM-DD')
      .refine(isCalendarDate, 'date is not a day of the calendar')
      .optional(),
    /** Steps per workflow run before continue-as-new (the server's own suggestion also triggers it). */
    stepsPerRun: positiveInt.max(1000).default(200),
    sampling: SamplingSchema.prefault({}),
  })
  .strict()
  .refine((s) => s.sampling.maxTokensPerTurn < s.contextWindow, {
    message: `sampling.maxTokensPerTurn must be smaller than contextWindow (a turn must fit the window; sampling.maxTokensPerTurn is ${DEFAULT_MAX_TOKENS_PER_TURN} unless set)`,
    path: ['sampling', 'maxTokensPerTurn'],
  });

export type TrajectorySpec = z.infer<typeof TrajectorySpecSchema>;
export type TrajectorySpecInput = z.input<typeof TrajectorySpecSchema>;

/**
 * Why a spec's window, beside a full turn, cannot hold its first prompt (the policy's system prompt and the
 * question), which would end the trajectory with max_context before its first model call; undefined when it can.
 */
function firstPromptProblem(s: TrajectorySpec): string | undefined {
  if (s.sampling.maxTokensPerTurn >= s.contextWindow) return undefined; // the schema says so
  const policy = contextPolicy(s.policy, s.date !== undefined ? { date: s.date } : {});
  const first = estimateTokens(policy.buildMessages(policy.initial(s.question)));
  const room = turnBudgetTokens(s.contextWindow, s.sampling.maxTokensPerTurn);
  if (first <= room) return undefined;
  return (
    `contextWindow ${s.contextWindow} leaves ${room} tokens beside sampling.maxTokensPerTurn ` +
    `${s.sampling.maxTokensPerTurn}, and the first prompt (the ${s.policy} system prompt and the question) takes ` +
    `about ${first}: raise contextWindow or lower sampling.maxTokensPerTurn`
  );
}

/**
 * The longest question (UTF-8 bytes). It travels in the workflow input of the trajectory, or of the ParallelMuse
 * question and each of its rollouts, in history every time: a larger one would pass Temporal's payload limits (2 MB a
 * payload, 4 MB a request).
 */
export const MAX_QUESTION_BYTES = 256 * 1024;
/** What the rollout starts of one workflow task may carry of the question together: under Temporal's 4 MB request. */
const MAX_QUESTION_BURST_BYTES = 3 * 1024 * 1024;

/**
 * Why the question is too large for the workflow inputs it travels in, naming its size and the limit; undefined when
 * it fits. `startedAtOnce` is how many rollouts may start in one workflow task, each start carrying the question.
 */
function questionSizeProblem(question: string, startedAtOnce: number): string | undefined {
  const bytes = utf8Length(question);
  const n = (b: number) => b.toLocaleString('en-US');
  if (bytes > MAX_QUESTION_BYTES)
    return `question is ${n(bytes)} bytes; at most ${n(MAX_QUESTION_BYTES)} (256 KiB): it travels in the workflow input of the question and each of its rollouts`;
  if (bytes * startedAtOnce > MAX_QUESTION_BURST_BYTES)
    return (
      `question is ${n(bytes)} bytes, and the ${startedAtOnce} rollouts started at once (maxConcurrentRollouts, or N ` +
      `when fewer) each carry it: about ${((bytes * startedAtOnce) / 1024 / 1024).toFixed(1)} MB in one request, past ` +
      `the ${MAX_QUESTION_BURST_BYTES / 1024 / 1024} MB allowed (Temporal refuses 4 MB): lower maxConcurrentRollouts or shorten the question`
    );
  return undefined;
}

/**
 * What the schema cannot say of a trajectory spec, with the field it is said of: a question too large for the
 * workflow inputs it travels in, or a window that cannot hold the first prompt. Undefined when there is none.
 * `startedAtOnce`: 1 for a trajectory run alone, startedAtOnce(spec) for a ParallelMuse question's. The clients and
 * the recorded input check apply it. Not part of the schema: runs whose input was checked in workflow code replay
 * that check with the schema, and one an earlier version let start must still replay.
 */
export function trajectorySpecProblem(
  s: TrajectorySpec,
  startedAtOnce = 1,
): { field: 'question' | 'contextWindow'; problem: string } | undefined {
  const size = questionSizeProblem(s.question, startedAtOnce);
  if (size) return { field: 'question', problem: size };
  const prompt = firstPromptProblem(s);
  return prompt ? { field: 'contextWindow', problem: prompt } : undefined;
}

/** The rollouts a ParallelMuse question may start in one workflow task: min(maxConcurrentRollouts, N). */
export function startedAtOnce(spec: { n: number; maxConcurrentRollouts: number }): number {
  return Math.min(spec.n, spec.maxConcurrentRollouts);
}

/** A question's child workflows in flight at once, unless its spec says otherwise. */
export const DEFAULT_MAX_CONCURRENT_ROLLOUTS = 16;

export const ParallelMuseSpecSchema = z
  .object({
    trajectory: TrajectorySpecSchema,
    /** Sampling budget per question (reference default 8). */
    n: positiveInt.max(1024).default(8),
    /** Initial from-scratch rollouts (M). */
    m: positiveInt.default(1),
    branchMode: BranchModeSchema.default('tool_call_ppl'),
    /** Top-K branch steps per rollout. */
    k: positiveInt.default(2),
    /** Branches per selected step. */
    t: positiveInt.default(3),
    /** Branching rounds; rounds > 1 branch again from the previous round's branches. */
    r: positiveInt.max(8).default(1),
    aggregators: z
      .array(AggregatorSchema)
      .min(1)
      // Each runs once per question; one named twice would run (and bill its model calls) twice.
      .refine((a) => new Set(a).size === a.length, 'aggregators must not name one twice')
      .default(['compressed', 'majority', 'confidence_weighted', 'min_uncertainty']),
    /** The aggregator whose answer is the question's prediction. */
    primaryAggregator: AggregatorSchema.default('compressed'),
    /** Pool/model for report + integration calls (defaults to the rollout pool/model). */
    aggregatorPool: PoolName.optional(),
    aggregatorModel: z.string().optional(),
    judge: z.enum(['exact', 'llm']).default('exact'),
    /** Child workflows in flight at once; far below Temporal's 2,000 pending-children limit. */
    maxConcurrentRollouts: positiveInt.max(500).default(DEFAULT_MAX_CONCURRENT_ROLLOUTS),
  })
  .strict()
  // Otherwise the prediction would silently come from another aggregator than the one asked for.
  .superRefine((s, ctx) => {
    if (s.aggregators.includes(s.primaryAggregator)) return;
    ctx.addIssue({
      code: 'custom',
      path: ['primaryAggregator'],
      message:
        `'${s.primaryAggregator}' is not one of aggregators [${s.aggregators.join(', ')}]: name one of them as ` +
        "primaryAggregator (it is 'compressed' when not given)",
    });
  });

export type ParallelMuseSpec = z.infer<typeof ParallelMuseSpecSchema>;
export type ParallelMuseSpecInput = z.input<typeof ParallelMuseSpecSchema>;
