// Tools the agent may call. Every failure (unknown tool, bad arguments, a tool that throws) becomes an
// observation naming the problem, so the trajectory goes on and the model can correct itself.

import type { ToolCall } from '../agent/types.js';
import { causeChainMessage, formatZodError } from '../common/errors.js';
import { simWebTools } from './sim-web.js';
import type { Tool, ToolContext } from './types.js';

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

  async run(call: ToolCall, ctx: ToolContext): Promise<ToolOutcome> {
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
    try {
      return { observation: await tool.run(parsed.data, ctx) };
    } catch (err) {
      // Cancelled (worker shutdown, activity cancelled): not the tool's answer, so nothing to keep as an observation.
      if (ctx.signal?.aborted) throw err;
      // Whatever was thrown (undefined, a plain object): describing it must not fail the step.
      const error = `Error: tool '${call.name}' failed: ${causeChainMessage(err)}`;
      return { observation: error, error };
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
