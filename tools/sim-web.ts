// search and visit over the simulator's synthetic knowledge base (see docs/simulator.md). The world is
// derived from the question, so any process can answer a tool call without shared state.
import { z } from 'zod';
import { simSearch, simVisit } from '../sim/tools.js';
import type { Tool } from './types.js';

// One message for the whole union: zod's own says only "Invalid input", which a model cannot act on.
// A query or URL past 2048 characters is no query or URL: refused, naming the limit, not run.
const MAX_ARG_CHARS = 2048;
const arg = z.string().min(1).max(MAX_ARG_CHARS);
const stringOrList = z.union([arg, z.array(arg).min(1).max(10)], {
  error: (issue) =>
    issue.input === undefined
      ? 'required'
      : `must be a non-empty string or a list of 1 to 10 non-empty strings of at most ${MAX_ARG_CHARS} characters`,
});

const search: Tool<{ query: string | string[] }> = {
  name: 'search',
  description: 'Web search over the simulated knowledge base. Arguments: {"query": ["..."]}',
  args: z.object({ query: stringOrList }),
  run: async (args, ctx) => simSearch(ctx.question, args.query),
};

const visit: Tool<{ url: string | string[]; goal?: string }> = {
  name: 'visit',
  description: 'Read simulated web pages. Arguments: {"url": ["..."], "goal": "..."}',
  args: z.object({
    url: stringOrList,
    goal: z
      .string()
      .max(2 * MAX_ARG_CHARS)
      .optional(),
  }),
  run: async (args, ctx) => simVisit(ctx.question, args.url, args.goal),
};

export function simWebTools(): Tool<unknown>[] {
  return [search, visit] as Tool<unknown>[];
}
