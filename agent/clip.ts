// Text cut down to fit: a turn's answer, observations in a prompt, the reports an integration reads, a question's
// result. Workflow-safe, and free of dependencies so that workflow code can clip without bundling the parsers.

/**
 * The longest answer kept (a turn's, the integration's): model-written text that travels in Temporal history is
 * bounded, so a degenerate turn cannot push an activity result or the step log past Temporal's 2 MB payload limit. No
 * deep-research answer comes near it.
 */
export const MAX_ANSWER_CHARS = 8192;

/**
 * The text with each lone surrogate (half a pair, as a server's JSON may escape it) replaced by U+FFFD, at the same
 * offset. msgpack, which carries every text between processes and into history, would make three U+FFFD of it, so a
 * text stored and read back would differ from the one used before it was stored.
 */
export function wellFormed(text: string): string {
  // String.prototype.toWellFormed is in Node 20; the project's TypeScript lib (ES2023) does not declare it.
  return (text as string & { toWellFormed(): string }).toWellFormed();
}

/**
 * The text's length in UTF-8 bytes, as msgpack stores it (a lone surrogate as U+FFFD's three). TextEncoder, not
 * Buffer: workflow code has no Buffer.
 */
export function utf8Length(text: string): number {
  return utf8.encode(text).length;
}
const utf8 = new TextEncoder();

/**
 * The first `max` UTF-16 units of `text`, one fewer where the cut would split a surrogate pair (an emoji, a rare CJK
 * character): half a pair is no character, and the content store's encoding turns it into replacement characters,
 * so what is stored would differ from what the step used.
 */
export function textPrefix(text: string, max: number): string {
  // slice(0, -n) would keep all but n: a limit below zero keeps nothing, as textSuffix's does.
  if (max <= 0) return '';
  const code = text.charCodeAt(max - 1);
  return text.slice(0, code >= 0xd800 && code <= 0xdbff ? max - 1 : max);
}

/** The last `max` UTF-16 units of `text`, one fewer where the cut would split a surrogate pair (textPrefix). */
export function textSuffix(text: string, max: number): string {
  if (max <= 0) return '';
  const from = text.length - max;
  const code = text.charCodeAt(from);
  return text.slice(code >= 0xdc00 && code <= 0xdfff ? from + 1 : from);
}

/** What clipText appends to a text it clipped. */
const CLIPPED = /\n\[… \d{1,16} more characters omitted\]$/;

/**
 * `text`, or its first `max` characters (textPrefix) and a marker saying how many were left out. A text clipped to
 * `max` or less already is left as it is: clipped again (a retried step reading back what its first attempt clipped),
 * its marker would count the first marker's characters instead of the text's. (A text that only looks clipped, a
 * page ending in such a marker, passes too: by at most the marker's length.)
 */
export function clipText(text: string, max: number | undefined): string {
  if (max === undefined || text.length <= max) return text;
  const clipped = CLIPPED.exec(text);
  if (clipped && clipped.index <= max) return text;
  const kept = textPrefix(text, max);
  return `${kept}\n[… ${text.length - kept.length} more characters omitted]`;
}

/**
 * `text`, or its start and its end in `max` characters (a third of them for the end) with a marker between saying how
 * many were left out: for texts whose conclusion comes last, as a report's final answer does.
 */
export function clipMiddle(text: string, max: number | undefined): string {
  if (max === undefined || text.length <= max) return text;
  const tail = textSuffix(text, Math.floor(max / 3));
  const head = textPrefix(text, max - Math.floor(max / 3));
  return `${head}\n[… ${text.length - head.length - tail.length} characters omitted …]\n${tail}`;
}

/**
 * Texts clipped (clipText, or `clip`) so that together they take at most `maxChars`, plus the marker of each one clipped (about
 * 35 characters; callers keep a margin for them): texts shorter than an equal share stay
 * whole and leave what they do not use to the longer ones, which share the rest equally. Each text is kept for at
 * least `minChars`, so that none is reduced to nothing however many there are.
 */
export function clipToShare(
  texts: readonly string[],
  maxChars: number,
  minChars = 0,
  clip: (text: string, max: number) => string = clipText,
): string[] {
  const order = texts.map((t, i) => ({ i, length: t.length })).sort((a, b) => a.length - b.length);
  const limits = new Array<number>(texts.length);
  let left = Math.max(0, maxChars);
  order.forEach(({ i, length }, k) => {
    const share = Math.max(minChars, Math.floor(left / (order.length - k)));
    limits[i] = Math.min(length, share);
    left = Math.max(0, left - limits[i]!);
  });
  return texts.map((t, i) => clip(t, limits[i]!));
}
