// Test hooks embedded in a question's text, e.g. "Which city ...? [sim:min-turns=40]".
//
// They let tests and benchmarks force rare situations (broken tool calls, very long runs, huge
// observations) through the real engine without any side channel: the question travels with the
// trajectory everywhere, so the model process and the tool process both see the same hooks.
// Directives are removed from the question before the synthetic world is derived from it, so a
// question keeps its ground truth when hooks are added.

export interface SimDirectives {
  /** Agent turn indices (0-based) whose tool call is emitted as invalid JSON. */
  malformedToolCallAt: Set<number>;
  /** Agent turn indices whose tool call names the unknown tool "teleport". */
  unknownToolAt: Set<number>;
  /** Agent turn indices that emit neither a tool call nor an answer. */
  garbageAt: Set<number>;
  /** Agent turn indices that open an <answer> and ramble past any token limit (the turn is cut off in it). */
  cutAnswerAt: Set<number>;
  /** Agent turn indices that end with an <answer> holding punctuation only (nothing an answer is compared by). */
  emptyAnswerAt: Set<number>;
  /** Agent turn indices that reason past any token limit (the turn is cut off in its <think>, before an action). */
  cutThinkAt: Set<number>;
  /** Agent turn indices that go on past their tool call, into an imagined response and answer. */
  runOnAt: Set<number>;
  /** Keep researching until at least this many agent turns have been taken. */
  minTurns: number;
  /** Pad every visited page to this many bytes. */
  obsBytes: number;
  /** Override of the puzzle's difficulty in [0, 1]. */
  difficulty: number | null;
}

const DIRECTIVE_RE = /\[sim:([a-z-]+)(?:@(\d+)|=([0-9.]+))?\]/g;

export function parseDirectives(text: string): SimDirectives {
  const d: SimDirectives = {
    malformedToolCallAt: new Set(),
    unknownToolAt: new Set(),
    garbageAt: new Set(),
    cutAnswerAt: new Set(),
    emptyAnswerAt: new Set(),
    cutThinkAt: new Set(),
    runOnAt: new Set(),
    minTurns: 0,
    obsBytes: 0,
    difficulty: null,
  };
  if (!text.includes('[sim:')) return d;
  for (const m of text.matchAll(DIRECTIVE_RE)) {
    const name = m[1];
    const at = m[2] !== undefined ? Number(m[2]) : null;
    const value = m[3] !== undefined ? Number(m[3]) : null;
    switch (name) {
      case 'malformed-tool-call':
        if (at !== null) d.malformedToolCallAt.add(at);
        break;
      case 'unknown-tool':
        if (at !== null) d.unknownToolAt.add(at);
        break;
      case 'garbage':
        if (at !== null) d.garbageAt.add(at);
        break;
      case 'cut-answer':
        if (at !== null) d.cutAnswerAt.add(at);
        break;
      case 'empty-answer':
        if (at !== null) d.emptyAnswerAt.add(at);
        break;
      case 'cut-think':
        if (at !== null) d.cutThinkAt.add(at);
        break;
      case 'run-on':
        if (at !== null) d.runOnAt.add(at);
        break;
      case 'min-turns':
        if (value !== null && Number.isFinite(value)) d.minTurns = Math.max(0, Math.floor(value));
        break;
      case 'obs-bytes':
        if (value !== null && Number.isFinite(value)) d.obsBytes = Math.max(0, Math.floor(value));
        break;
      case 'difficulty':
        if (value !== null && Number.isFinite(value)) d.difficulty = Math.min(1, Math.max(0, value));
        break;
      default:
        break;
    }
  }
  return d;
}

/**
 * Anything written as a directive, known or not: a mistyped one (`[sim:garbage@1,2]`, `[SIM:min-turns=5]`) is removed
 * too, so it does nothing rather than change the question, and with it the puzzle and its answer.
 */
const ANY_DIRECTIVE_RE = /\[sim:[^\]]*\]/gi;

/** The question without its directives: the text the synthetic world is derived from. */
export function stripDirectives(text: string): string {
  const base = /\[sim:/i.test(text) ? text.replace(ANY_DIRECTIVE_RE, ' ') : text;
  return base.replace(/\s+/g, ' ').trim();
}
