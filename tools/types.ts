import type { z } from 'zod';

export interface ToolContext {
  /** The trajectory's question: the synthetic environment derives its world from it. */
  question: string;
  signal?: AbortSignal;
}

export interface Tool<A = unknown> {
  name: string;
  description: string;
  /** Validates the model's arguments; a failure becomes an error observation naming the problem. */
  args: z.ZodType<A>;
  run(args: A, ctx: ToolContext): Promise<string>;
}
