// ParallelMuse stage 2 (compressed reasoning aggregation) and scoring: model calls over stored content.
// A report distils one trajectory; integration reads all reports and must choose one answer.
import { CHARS_PER_ESTIMATED_TOKEN, estimateTokens, promptBudgetTokens } from '../agent/context.js';
import { parseAnswer, parseJudgement, parseReport } from '../agent/format.js';
import { integrationMessages, judgeMessages, renderTrajectory, reportMessages } from '../agent/prompts.js';
import type { StepLogSegment } from '../agent/trajectory.js';
import type { TokenUsage } from '../agent/types.js';
import { type BlobStore, namespaceFor } from '../common/blob-store.js';
import { readStepLog } from '../common/step-log.js';
import { servedBy } from '../inference/types.js';
import type { ContextStore } from './content.js';
import type { CallModel } from './index.js';
import { generateParams, type SamplingInput } from './sampling.js';

export interface ReportInput {
  jobId: string;
  rolloutId: string;
  question: string;
  /** The trajectory's step log (a branch's reused prefix included); the activity reads the steps itself. */
  segments: StepLogSegment[];
  pool: string;
  model?: string;
  sampling: SamplingInput;
  seed: number;
  /** The window the report prompt must fit beside the report itself; absent in inputs recorded before it was. */
  contextWindow?: number;
  /** Server prompt tokens per estimated token, as the trajectory learned it (see LlmStepInput). */
  promptTokenRatio?: number;
}

export interface IntegrateInput {
  jobId: string;
  /** The parallelMuse workflow's id: integration calls of one batch spread over the pool by question. */
  questionId: string;
  question: string;
  reportRefs: string[];
  pool: string;
  model?: string;
  sampling: SamplingInput;
  seed: number;
}

/** Observations are clipped in the report input: the report keeps essential fragments, not whole pages. */
const REPORT_OBSERVATION_CHARS = 4000;
/**
 * Characters of trajectory text the report prompt has room for: its budget in estimated tokens (promptBudgetTokens)
 * less the rest of the prompt. Without the window a long trajectory (iterresearch repeats its evolving report at
 * every step) would be refused.
 */
export function reportTrajectoryChars(input: ReportInput): number | undefined {
  if (input.contextWindow === undefined) return undefined;
  const budget = promptBudgetTokens(
    input.contextWindow,
    input.sampling.maxTokensPerTurn,
    input.promptTokenRatio,
  );
  const overhead = estimateTokens(reportMessages(input.question, ''));
  return Math.max(0, (budget - overhead) * CHARS_PER_ESTIMATED_TOKEN);
}

export function createAggregationActivities(deps: {
  blobs: BlobStore;
  content: ContextStore;
  callModel: CallModel;
}) {
  const { blobs, content, callModel } = deps;
  return {
    async reportStep(input: ReportInput): Promise<{
      reportRef: string;
      usage: TokenUsage;
      model: string;
      reportChars: number;
      trajectoryChars: number;
    }> {
      const records = await readStepLog(blobs, input.segments);
      const steps = await Promise.all(
        records.map(async (s) => ({
          turn: await content.getText(s.turnRef),
          ...(s.observationRef ? { observation: await content.getText(s.observationRef) } : {}),
        })),
      );
      const text = renderTrajectory(steps, {
        maxObservationChars: REPORT_OBSERVATION_CHARS,
        maxChars: reportTrajectoryChars(input),
      });
      const g = await callModel(
        input.pool,
        reportMessages(input.question, text),
        generateParams(input.sampling, input.seed),
        {
          model: input.model,
          stickyKey: `${input.rolloutId}/report`,
          jobId: input.jobId,
        },
      );
      const report = parseReport(g.text) ?? g.text.trim();
      const reportRef = await content.putText(namespaceFor(input.jobId), report);
      const trajectoryChars = steps.reduce((n, s) => n + s.turn.length + (s.observation?.length ?? 0), 0);
      return { reportRef, usage: g.usage, model: servedBy(g), reportChars: report.length, trajectoryChars };
    },

    async integrateStep(
      input: IntegrateInput,
    ): Promise<{ answer: string | null; usage: TokenUsage; model: string; contextChars: number }> {
      const reports = await Promise.all(input.reportRefs.map((r) => content.getText(r)));
      const messages = integrationMessages(input.question, reports);
      const g = await callModel(input.pool, messages, generateParams(input.sampling, input.seed), {
        model: input.model,
        stickyKey: `${input.questionId}/integrate`,
        jobId: input.jobId,
      });
      return {
        answer: parseAnswer(g.text),
        usage: g.usage,
        model: servedBy(g),
        contextChars: messages.reduce((n, m) => n + m.content.length, 0),
      };
    },

    /** Model-graded correctness, like the reference's evaluation; `null` when the judge's output is unusable. */
    async judgeStep(input: {
      /** Absent in inputs recorded before it was passed. */
      jobId?: string;
      question: string;
      gold: string;
      prediction: string;
      pool: string;
      model?: string;
      sampling: SamplingInput;
    }): Promise<{ correct: boolean | null; usage: TokenUsage; model: string }> {
      const g = await callModel(
        input.pool,
        judgeMessages(input.question, input.gold, input.prediction),
        generateParams(input.sampling, 0),
        { model: input.model, jobId: input.jobId },
      );
      const j = parseJudgement(g.text);
      return { correct: j === null ? null : j === 'correct', usage: g.usage, model: servedBy(g) };
    },
  };
}
