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
  return parts.join(': ') || thrownText(err);
}

/** Text for a thrown value that is not an Error; never throws itself (String() does on a null-prototype object). */
function thrownText(v: unknown): string {
  try {
    const s = String(v);
    if (s !== '[object Object]') return s;
  } catch {
    // no toString: fall through to JSON
  }
  try {
    return JSON.stringify(v) ?? typeof v;
  } catch {
    return Object.prototype.toString.call(v);
  }
}
