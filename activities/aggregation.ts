// ParallelMuse stage 2 (compressed reasoning aggregation) and scoring: model calls over stored content.
// A report distils one trajectory; integration reads all reports and must choose one answer.

import { clipMiddle, clipText, clipToShare, MAX_ANSWER_CHARS } from '../agent/clip.js';
import { CHARS_PER_ESTIMATED_TOKEN, estimateTokens, promptBudgetTokens } from '../agent/context.js';
import { isEmptyAnswer, outputComplete, parseAnswer, parseJudgement, parseReport } from '../agent/format.js';
import { integrationMessages, judgeMessages, renderTrajectory, reportMessages } from '../agent/prompts.js';
import type { StepLogSegment } from '../agent/trajectory.js';
import type { ChatMessage, TokenUsage } from '../agent/types.js';
import { type BlobStore, namespaceFor } from '../common/blob-store.js';
import { createFailFastLimiter } from '../common/limiter.js';
import { readStepLog } from '../common/step-log.js';
import { servedBy } from '../inference/types.js';
import type { ContextStore } from './content.js';
import { callCuttingOnRefusal, cutOffReason } from './fit.js';
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
  /** The window the integration prompt must fit beside its answer; absent in inputs recorded before it was. */
  contextWindow?: number;
  /** The largest ratio (see ReportInput) among the reported rollouts. */
  promptTokenRatio?: number;
}

/** Observations are clipped in the report input: the report keeps essential fragments, not whole pages. */
const REPORT_OBSERVATION_CHARS = 4000;

/** Step texts a report reads from the content store at once. */
const STEP_READS_IN_FLIGHT = 16;

/**
 * Characters of content a prompt has room for beside `frame` (the prompt with the content left out): its budget in
 * estimated tokens (promptBudgetTokens) less the frame. Undefined without the window (inputs recorded before it was
 * passed).
 */
function contentRoomChars(
  input: { contextWindow?: number; sampling: SamplingInput; promptTokenRatio?: number },
  frame: () => ChatMessage[],
): number | undefined {
  if (input.contextWindow === undefined) return undefined;
  const budget = promptBudgetTokens(
    input.contextWindow,
    input.sampling.maxTokensPerTurn,
    input.promptTokenRatio,
  );
  return Math.max(0, (budget - estimateTokens(frame())) * CHARS_PER_ESTIMATED_TOKEN);
}

/**
 * Characters of trajectory text the report prompt has room for. Without the window a long trajectory (iterresearch
 * repeats its evolving report at every step) would be refused.
 */
export function reportTrajectoryChars(input: ReportInput): number | undefined {
  return contentRoomChars(input, () => reportMessages(input.question, ''));
}

/** Characters of report text the integration prompt has room for, all reports together (each one's tags aside). */
export function integrationReportChars(input: IntegrateInput): number | undefined {
  return contentRoomChars(input, () =>
    integrationMessages(
      input.question,
      input.reportRefs.map(() => ''),
    ),
  );
}

/**
 * However many reports share the window, each keeps at least this much (its opening and its final answer), unless the
 * server refused the prompt that held them.
 */
const MIN_REPORT_CHARS = 400;

export function createAggregationActivities(deps: {
  blobs: BlobStore;
  content: ContextStore;
  callModel: CallModel;
}) {
  const { blobs, content, callModel } = deps;
  return {
    /**
     * Distils one trajectory into a report, its trajectory cut to the window (reportTrajectoryChars), and cut further
     * when the server still refuses the prompt as too long. A call that ran out of tokens (inside its reasoning, or before closing
     * its report) wrote no report: `reportRef` is null and `reason` says so, and its usage still counts. Retrying
     * would not help (the same prompt and seed give the same output); the rollout is left out of the integration.
     */
    async reportStep(input: ReportInput): Promise<{
      reportRef: string | null;
      reason?: string;
      usage: TokenUsage;
      /** servedBy's label; absent in results recorded before it was added. */
      model?: string;
      reportChars: number;
      trajectoryChars: number;
    }> {
      const records = await readStepLog(blobs, input.segments);
      // A long run's steps are read a few at a time, each observation cut to what the report shows as it arrives
      // (rendering leaves a text clipped that way as it is): a 2,048-step run of large pages is not held whole.
      // After a failed read the step fails: the reads still waiting are not started.
      const limit = createFailFastLimiter(STEP_READS_IN_FLIGHT);
      let trajectoryChars = 0;
      const steps = await Promise.all(
        records.map((s) =>
          limit(async () => {
            const turn = await content.getText(s.turnRef);
            const observation = s.observationRef ? await content.getText(s.observationRef) : undefined;
            trajectoryChars += turn.length + (observation?.length ?? 0);
            return {
              turn,
              ...(observation !== undefined
                ? { observation: clipText(observation, REPORT_OBSERVATION_CHARS) }
                : {}),
            };
          }),
        ),
      );
      // The trajectory's share is an estimate: text that tokenizes more densely (code, CJK) can still be refused as
      // too long, and is then cut to half, twice at most, as the integration's reports are.
      const g = await callCuttingOnRefusal(reportTrajectoryChars(input), (budget) =>
        callModel(
          input.pool,
          reportMessages(
            input.question,
            renderTrajectory(steps, { maxObservationChars: REPORT_OBSERVATION_CHARS, maxChars: budget }),
          ),
          generateParams(input.sampling, input.seed),
          {
            model: input.model,
            stickyKey: `${input.rolloutId}/report`,
            jobId: input.jobId,
          },
        ),
      );
      const served = { usage: g.usage, model: servedBy(g), trajectoryChars };
      // Cut off, or nothing but reasoning or an empty <report>: no report for the integration to read.
      const report = outputComplete(g.text, g.finishReason, 'report') ? parseReport(g.text) : undefined;
      if (report === undefined || report === null)
        return {
          reportRef: null,
          reason:
            report === undefined
              ? cutOffReason(`the report of ${input.rolloutId}`, input.sampling)
              : `the report call for ${input.rolloutId} wrote no report`,
          reportChars: 0,
          ...served,
        };
      const reportRef = await content.putText(namespaceFor(input.jobId), report);
      return { reportRef, reportChars: report.length, ...served };
    },

    /**
     * Reads every report and chooses one answer. The reports share the window (clipToShare): many long ones would
     * otherwise make a prompt no server takes, costing the question its answer. A server that still counts the
     * prompt as too long gets the reports cut to half, twice at most, as summarizeStep does.
     */
    async integrateStep(input: IntegrateInput): Promise<{
      answer: string | null;
      /** Why there is no answer, when the call gave none for a known reason. */
      reason?: string;
      usage: TokenUsage;
      /** servedBy's label; absent in results recorded before it was added. */
      model?: string;
      contextChars: number;
    }> {
      const reports = await Promise.all(input.reportRefs.map((r) => content.getText(r)));
      let messages: ChatMessage[] = [];
      let attempt = 0;
      const g = await callCuttingOnRefusal(integrationReportChars(input), (budget) => {
        // Once the server has refused a prompt, the floor gives way to the halved budget: held, it would send the
        // same prompt again.
        const floor =
          attempt++ === 0
            ? MIN_REPORT_CHARS
            : Math.min(MIN_REPORT_CHARS, Math.floor((budget ?? 0) / reports.length));
        // A report ends with its final reasoning and answer: a clipped one keeps its end as well as its start.
        const clipped = clipToShare(reports, budget ?? Number.POSITIVE_INFINITY, floor, clipMiddle);
        messages = integrationMessages(input.question, clipped);
        return callModel(input.pool, messages, generateParams(input.sampling, input.seed), {
          model: input.model,
          stickyKey: `${input.questionId}/integrate`,
          jobId: input.jobId,
        });
      });
      const complete = outputComplete(g.text, g.finishReason, 'answer');
      const parsed = complete ? parseAnswer(g.text) : null;
      // Blank or punctuation only: no answer, not a prediction of ''.
      const empty = parsed !== null && isEmptyAnswer(parsed);
      const answer = empty ? null : parsed;
      const reason = !complete
        ? cutOffReason('the integration', input.sampling)
        : empty
          ? 'the integration gave an empty answer'
          : undefined;
      return {
        answer: answer === null ? null : clipText(answer, MAX_ANSWER_CHARS),
        ...(reason !== undefined ? { reason } : {}),
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
    }): Promise<{
      correct: boolean | null;
      reason?: string;
      usage: TokenUsage;
      /** servedBy's label; absent in results recorded before it was added. */
      model?: string;
    }> {
      const g = await callModel(
        input.pool,
        judgeMessages(input.question, input.gold, input.prediction),
        generateParams(input.sampling, 0),
        { model: input.model, jobId: input.jobId },
      );
      if (!outputComplete(g.text, g.finishReason, 'judgement'))
        return {
          correct: null,
          reason: cutOffReason('the judge', input.sampling),
          usage: g.usage,
          model: servedBy(g),
        };
      const j = parseJudgement(g.text);
      if (j === null)
        return {
          correct: null,
          reason:
            'the judge gave no verdict (no <judgement>correct</judgement> or <judgement>incorrect</judgement>)',
          usage: g.usage,
          model: servedBy(g),
        };
      return { correct: j === 'correct', usage: g.usage, model: servedBy(g) };
    },
  };
}
