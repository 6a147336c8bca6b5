import type { z } from 'zod';

export interface ToolContext {
  /** The trajectory's question: the synthetic environment derives its world from it. */
  question: string;
  /** Aborts when the step is cancelled, or when the tool's time is up (see deadline). */
  signal?: AbortSignal;
  /**
   * When the tool's answer is no longer of use (epoch ms): the registry stops waiting then, and the model is told the
   * tool did not answer. Set by the tool step from its attempt's deadline.
   */
  deadline?: number;
}

export interface Tool<A = unknown> {
  name: string;
  description: string;
  /** Validates the model's arguments; a failure becomes an error observation naming the problem. */
  args: z.ZodType<A>;
  /**
   * The longest one call may take (a search or fetch that hangs would otherwise hold the step, and a worker slot,
   * until the step's own deadline, minutes away); the step's deadline bounds it too.
   */
  timeoutMs?: number;
  run(args: A, ctx: ToolContext): Promise<string>;
}
