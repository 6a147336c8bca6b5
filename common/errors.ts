// Failure text for people. Workflow-safe (no imports, no I/O): workflows record it in their results, and the CLI
// and clients print it.

/**
 * The message of a failure and of its causes, outermost first: Temporal's failures say only "Workflow execution
 * failed" or "Child Workflow execution failed" and keep the reason in their causes. A message a cause repeats from
 * an outer one is given once.
 */
export function causeChainMessage(err: unknown): string {
  const parts: string[] = [];
  for (let e = err as { message?: unknown; cause?: unknown } | null | undefined; e; e = e.cause as typeof e) {
    const m = typeof e.message === 'string' ? e.message : '';
    if (m && !parts.some((p) => p.includes(m))) parts.push(m);
  }
  return parts.join(': ') || String(err);
}
