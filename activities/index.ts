// Side effects the workflows call. Each takes and returns references plus small metadata, so Temporal
// history stays small whatever the size of prompts and observations. Built from explicit dependencies
// (NATS connection, blob store, tools, config) as in the Temporal samples' dependency-injection pattern.

import type { NatsConnection } from '@nats-io/nats-core';
import { Context } from '@temporalio/activity';
import { clipText, textPrefix } from '../agent/clip.js';
import {
  type ContextState,
  contextPolicy,
  estimateTokens,
  promptBudgetTokens,
  turnBudgetTokens,
} from '../agent/context.js';
import { outputComplete, parseSummary, parseTurn, toolCallProblem } from '../agent/format.js';
import { TURN_STOP } from '../agent/prompts.js';
import { emptyUsage, type StepKind, type StepRecord } from '../agent/trajectory.js';
import type {
  ChatMessage,
  ContextPolicyName,
  ParsedTurn,
  RegionScores,
  TokenUsage,
  ToolCall,
} from '../agent/types.js';
import { type BlobStore, namespaceFor } from '../common/blob-store.js';
import type { MuseConfig } from '../common/config.js';
import { writeStepLog } from '../common/step-log.js';
import { PoolClient } from '../inference/pool-client.js';
import { ContextLengthError, type GenerateParams, type Generation, servedBy } from '../inference/types.js';
import type { ToolOutcome, ToolRegistry } from '../tools/registry.js';
import { createAggregationActivities } from './aggregation.js';
import { ContextStore } from './content.js';
import { callCuttingOnRefusal, cutOffReason } from './fit.js';
import { attemptDeadline } from './heartbeat.js';
import { inputActivities } from './input.js';
import { generateParams, type SamplingInput } from './sampling.js';

export type { SamplingInput } from './sampling.js';

export interface ActivityDeps {
  nc: NatsConnection;
  blobs: BlobStore;
  tools: ToolRegistry;
  config: MuseConfig;
  /** Observes every model request this worker makes (tests assert no completed step is re-run). */
  onModelCall?: (e: { trajectoryId: string; step: number; kind: string; promptTokenRatio?: number }) => void;
  /**
   * Observes every tool this worker runs (tests assert a branch does not repeat its prefix's tool calls); a promise it
   * returns is awaited before the tool runs (tests hold a tool step in flight).
   */
  onToolCall?: (e: { trajectoryId?: string; step?: number; tool: string }) => unknown;
  /**
   * Where the activities keep their router of each pool, made on first use: the worker's own, so it can close them
   * (their subscriptions and timers) when it stops.
   */
  pools?: Map<string, PoolClient>;
}

export interface LlmStepInput {
  jobId: string;
  trajectoryId: string;
  step: number;
  policy: ContextPolicyName;
  /** Absent at step 0 of a fresh trajectory: the initial context is built from `question`. */
  contextRef?: string;
  question?: string;
  pool: string;
  model?: string;
  sampling: SamplingInput;
  seed: number;
  contextWindow: number;
  summaryThreshold: number;
  /** The trajectory's date, shown in its system prompt; absent when it has none. */
  date?: string;
  /** Requests with one route key land together while nothing is cached (all rollouts of one question). */
  routeKey?: string;
  /** Server prompt tokens per estimated token, from the trajectory's last turn; 1 until there is one. */
  promptTokenRatio?: number;
}

export type LlmStepResult =
  | {
      status: 'turn';
      contextRef: string;
      turnRef: string;
      kind: StepKind;
      tool?: string;
      actionPreview: string;
      answer?: string;
      regions: RegionScores;
      usage: TokenUsage;
      memberId: string;
      /** servedBy's label; absent in results recorded before it was added. */
      model?: string;
      finishReason: 'stop' | 'length';
      /** This turn's prompt as estimated before the call (uncalibrated): with usage.promptTokens, the next ratio. */
      estimatedPromptTokens: number;
    }
  | { status: 'needs_summary'; contextRef: string; estimatedPromptTokens: number }
  | {
      status: 'max_context';
      contextRef: string;
      estimatedPromptTokens: number;
      /** Why the turn could not be taken; absent in results recorded before it was given. */
      reason?: string;
    };

export interface ToolStepInput {
  jobId: string;
  /** The tool memo's key and onToolCall's event; absent in inputs recorded before they were passed. */
  trajectoryId?: string;
  step?: number;
  policy: ContextPolicyName;
  contextRef: string;
  turnRef: string;
  /** 'length' when the turn was cut off at maxTokensPerTurn; absent in inputs recorded before it was passed. */
  finishReason?: 'stop' | 'length';
}

export interface ToolStepResult {
  contextRef: string;
  observationRef: string;
  observationBytes: number;
  toolCalled: boolean;
  toolError?: string;
}

export interface SummarizeInput {
  jobId: string;
  trajectoryId: string;
  step: number;
  policy: ContextPolicyName;
  contextRef: string;
  pool: string;
  model?: string;
  sampling: SamplingInput;
  seed: number;
  /** The summary prompt is cut to fit beside the summary's output; absent in inputs recorded before it was. */
  contextWindow?: number;
  promptTokenRatio?: number;
}

export interface SummarizeResult {
  /**
   * 'max_context': no usable summary (see summarizeStep); the history is unchanged. Absent in results recorded
   * before it was added, which were all summaries.
   */
  status?: 'summarized' | 'max_context';
  contextRef: string;
  usage: TokenUsage;
  /** servedBy's label of the summary's generation, when there was one. */
  model?: string;
  reason?: string;
}

/** The summary prompt's limit in estimated tokens (see promptBudgetTokens). */
function summaryBudget(input: SummarizeInput): number | undefined {
  if (input.contextWindow === undefined) return undefined;
  return promptBudgetTokens(input.contextWindow, input.sampling.maxTokensPerTurn, input.promptTokenRatio);
}

const MAX_TOOL_ERROR_CHARS = 1000;

const CUT_OFF_CALL_PROBLEM = 'tool call cut off at the token limit (maxTokensPerTurn)';

export const CUT_OFF_ANSWER_OBSERVATION =
  'Error: the answer was cut off at the token limit before </answer>. Give the final answer again, briefly, inside <answer></answer>.';

export const EMPTY_ANSWER_OBSERVATION =
  'Error: the <answer> is empty. Give the final answer inside <answer></answer>, or call a tool to find it.';

export const CUT_OFF_TURN_OBSERVATION =
  'Error: the response was cut off at the token limit before it gave a <tool_call> or an <answer>. Think more briefly, then either call a tool or give the final answer.';

export const NO_ACTION_OBSERVATION =
  'Error: the response has neither a <tool_call> nor an <answer>. Think, then either call a tool or give the final answer.';

export function createActivities(deps: ActivityDeps) {
  const content = new ContextStore(deps.blobs);
  const pools = deps.pools ?? new Map<string, PoolClient>();
  const router = deps.config.router;

  function pool(name: string): PoolClient {
    let p = pools.get(name);
    if (!p) {
      p = new PoolClient({
        nc: deps.nc,
        pool: name,
        policy: router.policy,
        memberTtlMs: router.memberTtlMs,
        sharePlacements: router.sharePlacements,
        maxAttempts: router.maxAttempts,
        leaseMs: router.leaseMs,
        attemptTimeoutMs: router.attemptTimeoutMs,
        inlineRequestBytes: router.inlineRequestBytes,
        maxRequestBytes: router.maxRequestBytes,
        blobs: deps.blobs,
      });
      pools.set(name, p);
    }
    return p;
  }

  /** A model call bounded by the activity's own deadline (the worker's attemptInterceptor heartbeats meanwhile). */
  async function callModel(
    poolName: string,
    messages: ChatMessage[],
    params: GenerateParams,
    opts: CallModelOptions,
  ): Promise<Generation> {
    const ctx = Context.current();
    return pool(poolName).generate(messages, params, {
      deadline: Math.max(Date.now() + 1, attemptDeadline(ctx)),
      signal: ctx.cancellationSignal,
      stickyKey: opts.stickyKey,
      model: opts.model,
      ...(opts.jobId !== undefined ? { blobNamespace: namespaceFor(opts.jobId) } : {}),
    });
  }

  async function loadContext(input: {
    contextRef?: string;
    question?: string;
    policy: ContextPolicyName;
    jobId: string;
    summaryThreshold?: number;
    date?: string;
  }) {
    const policy = contextPolicy(input.policy, {
      summaryThreshold: input.summaryThreshold,
      date: input.date,
    });
    if (input.contextRef) {
      const { state } = await content.getContext(input.contextRef);
      return { policy, state, contextRef: input.contextRef };
    }
    if (!input.question) throw new TypeError('llmStep needs either contextRef or question');
    const state = policy.initial(input.question);
    const contextRef = await content.putContext(namespaceFor(input.jobId), input.policy, state);
    return { policy, state, contextRef };
  }

  /**
   * Runs a step's tool once: the first attempt records what it returned, and a retried toolStep (its context write
   * failed, its worker died after the tool answered) takes that instead of searching or fetching again.
   */
  async function runToolOnce(
    input: ToolStepInput,
    call: ToolCall,
    question: string,
    ctx: Context,
  ): Promise<ToolOutcome & { observationRef?: string }> {
    const ns = namespaceFor(input.jobId);
    // Inputs recorded before trajectoryId was passed cannot be told apart: those run the tool again.
    const memo =
      input.trajectoryId === undefined
        ? undefined
        : `tool/${input.trajectoryId}/${input.step}/${input.turnRef}`;
    // Only a retry can find a record: the first attempt saves the read.
    if (memo && ctx.info.attempt > 1) {
      const done = await deps.blobs.getMemo<{ observationRef: string; error?: string }>(ns, memo);
      if (done) {
        const observation = await content.getText(done.observationRef);
        return {
          observation,
          observationRef: done.observationRef,
          ...(done.error ? { error: done.error } : {}),
        };
      }
    }
    await deps.onToolCall?.({ trajectoryId: input.trajectoryId, step: input.step, tool: call.name });
    const out = await deps.tools.run(call, {
      question,
      signal: ctx.cancellationSignal,
      deadline: attemptDeadline(ctx) - toolWriteRoomMs(ctx.info.startToCloseTimeoutMs),
    });
    if (!memo) return out;
    const observationRef = await content.putText(ns, out.observation);
    // The error clipped as the step records it: one as long as an observation (whole in observationRef) could pass
    // what one KV message takes, and the memo would fail on every retry after the tool ran.
    const error = out.error ? clipText(out.error, MAX_TOOL_ERROR_CHARS) : undefined;
    await deps.blobs.setMemo(ns, memo, { observationRef, ...(error ? { error } : {}) });
    return { ...out, observationRef };
  }

  return {
    async llmStep(input: LlmStepInput): Promise<LlmStepResult> {
      const { policy, state, contextRef } = await loadContext(input);
      // What the window leaves beside a full turn, in estimated tokens: the bound of the max_context check below, so
      // a prompt the policy can cut (iterresearch's last observation) is cut only when it would not pass it.
      const budget = turnBudgetTokens(
        input.contextWindow,
        input.sampling.maxTokensPerTurn,
        input.promptTokenRatio,
      );
      const messages = policy.buildMessages(state, budget);
      const rawEstimate = estimateTokens(messages);
      const estimate = Math.ceil(rawEstimate * (input.promptTokenRatio ?? 1));
      if (
        state.steps.length > 0 &&
        policy.wantsSummary(estimate, input.contextWindow, input.sampling.maxTokensPerTurn)
      ) {
        return { status: 'needs_summary', contextRef, estimatedPromptTokens: estimate };
      }
      // No room left for a full turn: the server would reject the request (prompt + max_tokens > window). Judged in
      // estimated tokens, as the budget is (see turnBudgetTokens).
      if (rawEstimate > budget) {
        return {
          status: 'max_context',
          contextRef,
          estimatedPromptTokens: estimate,
          reason:
            `the prompt (about ${estimate} tokens) leaves no room for a turn of sampling.maxTokensPerTurn ` +
            `${input.sampling.maxTokensPerTurn} in contextWindow ${input.contextWindow}`,
        };
      }
      deps.onModelCall?.({
        trajectoryId: input.trajectoryId,
        step: input.step,
        kind: 'turn',
        promptTokenRatio: input.promptTokenRatio,
      });
      let g: Generation;
      // The estimate of the prompt the server answered, which the workflow calibrates its next budget by.
      let sentEstimate = rawEstimate;
      try {
        // The estimate said it fits and the server says not (content that tokenizes densely, a page in another
        // script): a prompt the policy can cut is cut to half its size, twice at most, as the summary's is.
        g = await callCuttingOnRefusal(policy.cutsToFit ? rawEstimate : undefined, (cut) => {
          const sent = cut === rawEstimate || cut === undefined ? messages : policy.buildMessages(state, cut);
          sentEstimate = sent === messages ? rawEstimate : estimateTokens(sent);
          return callModel(
            input.pool,
            sent,
            { ...generateParams(input.sampling, input.seed), stop: [...TURN_STOP] },
            {
              model: input.model,
              stickyKey: input.routeKey ?? input.trajectoryId,
              jobId: input.jobId,
            },
          );
        });
      } catch (err) {
        if (!(err instanceof ContextLengthError)) throw err;
        // Refused however cut: the same outcome as a full window, not an error; a policy with a summary turn
        // summarises.
        const summarise = policy.summarises && state.steps.length > 0;
        if (summarise) return { status: 'needs_summary', contextRef, estimatedPromptTokens: estimate };
        return {
          status: 'max_context',
          contextRef,
          estimatedPromptTokens: estimate,
          reason: `the server refused the prompt (about ${estimate} tokens) as over its context length: ${err.message}`,
        };
      }
      const turn = parseTurn(g.text, g.finishReason);
      const turnRef = await content.putText(namespaceFor(input.jobId), g.text);
      return {
        status: 'turn',
        contextRef,
        turnRef,
        kind: turn.kind,
        ...(turn.kind === 'tool_call' ? { tool: turn.call.name } : {}),
        ...(turn.kind === 'answer' ? { answer: turn.answer } : {}),
        actionPreview: preview(turn, g.finishReason),
        regions: g.regions,
        usage: g.usage,
        memberId: g.memberId,
        model: servedBy(g),
        finishReason: g.finishReason,
        estimatedPromptTokens: sentEstimate,
      };
    },

    async toolStep(input: ToolStepInput): Promise<ToolStepResult> {
      // A tool may take longer than the heartbeat timeout (a slow search or fetch): the worker's attemptInterceptor
      // keeps beating meanwhile.
      const ctx = Context.current();
      const ns = namespaceFor(input.jobId);
      // Before anything of the step is stored or read from the cache (see ContextStore.putStep).
      const generation = deps.blobs.generation(ns);
      const [raw, { policy, state }] = await Promise.all([
        content.getText(input.turnRef),
        loadContext({ ...input }),
      ]);
      const turn = toolStepTurn(raw, input.finishReason);
      let observation: string;
      let observationRef: string | undefined;
      let toolError: string | undefined;
      let toolCalled = false;
      switch (turn.kind) {
        case 'tool_call': {
          toolCalled = true;
          const out = await runToolOnce(input, turn.call, state.question, ctx);
          observation = out.observation;
          observationRef = out.observationRef;
          toolError = out.error;
          break;
        }
        case 'invalid_tool_call':
          // The model gets the reference's fixed wording; the record says what was wrong with this call.
          observation = turn.error;
          toolError = turn.cutOff ? CUT_OFF_CALL_PROBLEM : (toolCallProblem(turn.raw) ?? turn.error);
          break;
        case 'no_action':
          // A turn the token limit cut off is not one where the model forgot to act: it is told so.
          observation = turn.cutOffAnswer
            ? CUT_OFF_ANSWER_OBSERVATION
            : turn.emptyAnswer
              ? EMPTY_ANSWER_OBSERVATION
              : input.finishReason === 'length'
                ? CUT_OFF_TURN_OBSERVATION
                : NO_ACTION_OBSERVATION;
          toolError = observation;
          break;
        case 'answer':
          throw new TypeError('toolStep called for an answer turn');
      }
      const next: ContextState = policy.advance(state, turn, raw, observation);
      const stored = await content.putStep(ns, input.policy, next, observation, {
        ...(observationRef !== undefined ? { observationRef } : {}),
        generation,
      });
      return {
        ...stored,
        observationBytes: observation.length,
        toolCalled,
        // The whole error is in the observation; history gets its start (a failing tool's message can be a page).
        ...(toolError ? { toolError: clipText(toolError, MAX_TOOL_ERROR_CHARS) } : {}),
      };
    },

    /**
     * resum's context-management step: the model summarises, the history is replaced by question + summary. When no
     * usable summary can be had (the server refuses even the cut prompt, or the summary is cut off at
     * maxTokensPerTurn) the history is left as it is and the status says the window is full: the trajectory ends
     * with `max_context` rather than failing, or going on from a fragment.
     */
    async summarizeStep(input: SummarizeInput): Promise<SummarizeResult> {
      const { policy, state } = await loadContext(input);
      let g: Generation;
      try {
        g = await callCuttingOnRefusal(summaryBudget(input), (budget) => {
          deps.onModelCall?.({ trajectoryId: input.trajectoryId, step: input.step, kind: 'summary' });
          return callModel(
            input.pool,
            policy.summaryMessages(state, budget),
            generateParams(input.sampling, input.seed),
            { model: input.model, stickyKey: `${input.trajectoryId}/summary`, jobId: input.jobId },
          );
        });
      } catch (err) {
        if (!(err instanceof ContextLengthError)) throw err;
        return {
          status: 'max_context',
          contextRef: input.contextRef,
          usage: emptyUsage(),
          reason: `the server refuses even the cut summary prompt (${err.message})`,
        };
      }
      if (!outputComplete(g.text, g.finishReason, 'summary'))
        return {
          status: 'max_context',
          contextRef: input.contextRef,
          usage: g.usage,
          model: servedBy(g),
          reason: cutOffReason('the summary', input.sampling),
        };
      // Nothing but reasoning, or an empty <summary>: not a summary to replace the whole history with.
      const summary = parseSummary(g.text);
      if (summary === null)
        return {
          status: 'max_context',
          contextRef: input.contextRef,
          usage: g.usage,
          model: servedBy(g),
          reason: 'the summary call wrote no summary',
        };
      const contextRef = await content.putContext(
        namespaceFor(input.jobId),
        input.policy,
        policy.applySummary(state, summary),
      );
      return { status: 'summarized', contextRef, usage: g.usage, model: servedBy(g) };
    },

    async saveStepLog(input: { jobId: string; records: StepRecord[] }): Promise<string> {
      return writeStepLog(deps.blobs, namespaceFor(input.jobId), input.records);
    },

    ...createAggregationActivities({ blobs: deps.blobs, content, callModel }),
    ...inputActivities,
  };
}

export type MuseActivities = ReturnType<typeof createActivities>;
export interface CallModelOptions {
  model?: string;
  stickyKey?: string;
  /** The job whose content namespace holds the request's body if it is too large to send inline. */
  jobId?: string;
}
export type CallModel = (
  pool: string,
  messages: ChatMessage[],
  params: GenerateParams,
  opts: CallModelOptions,
) => Promise<Generation>;

/**
 * The turn toolStep acts on. Only a turn llmStep did not take as an answer comes here: an <answer> in it without its
 * end is one llmStep found cut off at the token limit, whatever the input says (the workflow passes finishReason only
 * when it is 'length', and inputs recorded before it was passed have none). A <tool_call> without its end is marked
 * cut off only when the input says the turn was: one the model stopped itself is an invalid call, and its record
 * says what is wrong with it.
 */
export function toolStepTurn(raw: string, finishReason: 'stop' | 'length' | undefined): ParsedTurn {
  const turn = parseTurn(raw, finishReason ?? 'stop');
  return turn.kind === 'answer' ? parseTurn(raw, 'length') : turn;
}

/**
 * What a tool step keeps of its attempt after the tool, for storing the observation and the next context: a tenth of
 * start-to-close, 30 s at most. A tool that has not answered by then is given up on (the model is told), rather than
 * the attempt timed out and the tool run again.
 */
function toolWriteRoomMs(startToCloseMs: number): number {
  return Math.min(30_000, startToCloseMs / 10);
}

function preview(turn: ParsedTurn, finishReason: 'stop' | 'length'): string {
  const clip = (s: string, n = 120) => (s.length > n ? `${textPrefix(s, n - 1)}…` : s);
  switch (turn.kind) {
    case 'tool_call':
      return clip(`${turn.call.name} ${JSON.stringify(turn.call.arguments)}`);
    case 'answer':
      return clip(`answer: ${turn.answer}`);
    case 'invalid_tool_call':
      return turn.cutOff ? 'tool call cut off at the token limit' : 'invalid tool call';
    case 'no_action':
      if (turn.cutOffAnswer) return 'answer cut off at the token limit';
      if (turn.emptyAnswer) return 'empty answer';
      return finishReason === 'length' ? 'cut off at the token limit before an action' : 'no action';
  }
}
