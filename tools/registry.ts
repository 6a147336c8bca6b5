// Tools the agent may call. Every failure (unknown tool, bad arguments, a tool that throws) becomes an
// observation naming the problem, so the trajectory goes on and the model can correct itself.

import { clipText, wellFormed } from '../agent/clip.js';
import type { ToolCall } from '../agent/types.js';
import { causeChainMessage, formatZodError } from '../common/errors.js';
import { timerDeadline, untilAborted } from '../inference/retry.js';
import { simWebTools } from './sim-web.js';
import type { Tool, ToolContext } from './types.js';

/**
 * The longest observation kept, in characters: past any model's window (a 128k-token window holds about half of it),
 * so a tool's answer is cut only where no prompt could have held it whole. Bounded so that one runaway page (or a
 * tool that echoes its arguments) cannot hold a worker's memory or the content store hostage.
 */
export const MAX_OBSERVATION_CHARS = 1024 * 1024;

export interface ToolOutcome {
  observation: string;
  /** Set when the call failed; the observation then carries the message the model sees. */
  error?: string;
}

export class ToolRegistry {
  private readonly tools = new Map<string, Tool<unknown>>();

  constructor(tools: Tool<unknown>[]) {
    for (const t of tools) this.tools.set(t.name, t);
  }

  names(): string[] {
    return [...this.tools.keys()];
  }

  /**
   * Everything a step keeps of a tool leaves here: well-formed (a page's or the model's own half surrogate pair; see
   * wellFormed) and at most MAX_OBSERVATION_CHARS.
   */
  async run(call: ToolCall, ctx: ToolContext): Promise<ToolOutcome> {
    const out = await this.attempt(call, ctx);
    // Cut before it is made well-formed (in place, offsets unchanged): a runaway tool's output is not copied whole.
    const kept = (text: string) => wellFormed(clipText(text, MAX_OBSERVATION_CHARS));
    const observation = kept(out.observation);
    if (out.error === undefined) return { observation };
    return { observation, error: out.error === out.observation ? observation : kept(out.error) };
  }

  private async attempt(call: ToolCall, ctx: ToolContext): Promise<ToolOutcome> {
    const tool = this.tools.get(call.name);
    if (!tool) {
      const error = `Error: unknown tool '${call.name}'. Available tools: ${this.names().join(', ')}.`;
      return { observation: error, error };
    }
    const parsed = tool.args.safeParse(call.arguments);
    if (!parsed.success) {
      const error = `Error: invalid arguments for tool '${call.name}': ${formatZodError(parsed.error)}`;
      return { observation: error, error };
    }
    // A step cancelled, or out of time, before the tool started: it is not started (a search or fetch may cost).
    ctx.signal?.throwIfAborted();
    const started = Date.now();
    const timedOut = () => {
      const error = `Error: tool '${call.name}' did not answer within ${((Date.now() - started) / 1000).toFixed(0)} s.`;
      return { observation: error, error };
    };
    // Thrown, not told the model: the tool never ran, so "it did not answer" would be false, and a retried step (with
    // a fresh attempt's time) would find that observation recorded and repeat it.
    if (ctx.deadline !== undefined && ctx.deadline <= started)
      throw new Error(
        `tool '${call.name}' was not started: its step had no time left before the tool's deadline`,
      );
    const deadline = Math.min(
      ctx.deadline ?? Number.POSITIVE_INFINITY,
      tool.timeoutMs === undefined ? Number.POSITIVE_INFINITY : started + tool.timeoutMs,
    );
    // Not left to the tool: one that ignores its signal would hold the step past its attempt, and a retry would run
    // it a second time while the first still ran.
    const timeout = new AbortController();
    const timer = Number.isFinite(deadline)
      ? setTimeout(
          () => timeout.abort(new Error('tool deadline')),
          timerDeadline(deadline, started) - started,
        )
      : undefined;
    const signal = ctx.signal ? AbortSignal.any([ctx.signal, timeout.signal]) : timeout.signal;
    try {
      const result: unknown = await untilAborted(
        tool.run(parsed.data, { ...ctx, signal, ...(Number.isFinite(deadline) ? { deadline } : {}) }),
        signal,
      );
      // A tool that answers with something other than text (parsed JSON, nothing) gets an observation saying so: the
      // step's failure it would otherwise cause is not retryable and would end the run.
      if (typeof result !== 'string') {
        const error = `Error: tool '${call.name}' answered with ${result === null ? 'null' : typeof result}, not text.`;
        return { observation: error, error };
      }
      return { observation: result };
    } catch (err) {
      // Cancelled (worker shutdown, activity cancelled): not the tool's answer, so nothing to keep as an observation.
      if (ctx.signal?.aborted) throw err;
      if (timeout.signal.aborted) return timedOut();
      // Whatever was thrown (undefined, a plain object): describing it must not fail the step.
      const error = `Error: tool '${call.name}' failed: ${causeChainMessage(err)}`;
      return { observation: error, error };
    } finally {
      clearTimeout(timer);
    }
  }
}

export type ToolEnvironment = 'sim';

export function createToolRegistry(env: ToolEnvironment = 'sim'): ToolRegistry {
  switch (env) {
    case 'sim':
      return new ToolRegistry(simWebTools());
  }
}
