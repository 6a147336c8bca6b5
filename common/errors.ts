// Failure text for people. Workflow-safe (no runtime imports, no I/O): workflows record it in their results, and
// the CLI and clients print it.
import type { z } from 'zod';

/** Issues named in a validation error: a malformed list can have thousands, and the first few say enough. */
const MAX_ISSUES = 8;

/** "field.path: message; other.field: message" — names the offending fields for the user, the first few of them. */
export function formatZodError(err: Pick<z.ZodError, 'issues'>): string {
  const named = err.issues
    .slice(0, MAX_ISSUES)
    .map((i) => `${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`);
  const more = err.issues.length - named.length;
  return more > 0 ? `${named.join('; ')}; and ${more} more` : named.join('; ');
}

/** A field of a thrown value, or undefined: a thrown object's fields can be getters that throw themselves. */
function field(e: unknown, key: 'message' | 'cause' | 'code'): unknown {
  try {
    return (e as Record<string, unknown>)[key];
  } catch {
    return undefined;
  }
}

/**
 * A failure and its causes, outermost first, each once: a cause chain can loop (a.cause = a), and ends at a cause
 * that cannot be read.
 */
export function causeChain(err: unknown): unknown[] {
  const chain = new Set<unknown>();
  for (let e = err; e !== null && e !== undefined && !chain.has(e); e = field(e, 'cause')) chain.add(e);
  return [...chain];
}

/**
 * The message of a failure and of its causes, outermost first: Temporal's failures say only "Workflow execution
 * failed" or "Child Workflow execution failed" and keep the reason in their causes. A message a cause repeats from
 * an outer one is given once.
 */
export function causeChainMessage(err: unknown): string {
  const parts: string[] = [];
  for (const e of causeChain(err)) {
    // A cause may be a bare string (new Error('write failed', { cause: 'disk full' })): it is its own message.
    const message = typeof e === 'string' ? e : field(e, 'message');
    const m = typeof message === 'string' ? message : '';
    if (m && !parts.some((p) => p.includes(m))) parts.push(m);
  }
  return parts.join(': ') || thrownText(err);
}

/** The numeric codes in a failure and its causes, outermost first (gRPC statuses, where the Temporal client's are). */
export function causeCodes(err: unknown): number[] {
  return causeChain(err)
    .map((e) => (typeof e === 'object' ? field(e, 'code') : undefined))
    .filter((c): c is number => typeof c === 'number');
}

/** A thrown value's text is for people: a huge object thrown whole is cut to this. */
const MAX_THROWN_TEXT = 2000;

/** Text for a thrown value that is not an Error; never throws itself (String() does on a null-prototype object). */
function thrownText(v: unknown): string {
  let text: string | undefined;
  try {
    const s = String(v);
    if (s !== '[object Object]') text = s;
  } catch {
    // no toString: fall through to JSON
  }
  try {
    text ??= JSON.stringify(v) ?? typeof v;
  } catch {
    text = Object.prototype.toString.call(v);
  }
  return text.length > MAX_THROWN_TEXT ? `${text.slice(0, MAX_THROWN_TEXT)}…` : text;
}
