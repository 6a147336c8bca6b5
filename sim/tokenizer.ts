// Simulated tokenizer and chat template.
//
// The simulator needs token counts (usage, context limits, serving cost) and token boundaries
// (per-token logprobs, prefix-cache blocks) that behave like a BPE tokenizer's without shipping a
// vocabulary. Pieces are words with their leading whitespace, single punctuation marks, and
// trailing whitespace; runs longer than 8 characters are cut into chunks, which keeps the
// characters-per-token ratio near real tokenizers (about 3-5 for English prose, lower for code,
// URLs and JSON). Pieces always concatenate back to the input exactly.

import type { ChatMessage, Role } from '../agent/types.js';

const PIECE_RE = /\s*[A-Za-z0-9]+|\s*[^\sA-Za-z0-9]|\s+/gu;
const MAX_PIECE = 8;

function isHighSurrogate(code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff;
}

/** Cuts a long piece into chunks of at most MAX_PIECE code units without splitting a surrogate pair. */
function pushChunks(piece: string, out: string[]): void {
  let start = 0;
  // Short leading whitespace stays attached to the first chunk, as BPE merges ' word'.
  let wsEnd = 0;
  while (wsEnd < piece.length && /\s/.test(piece[wsEnd]!)) wsEnd++;
  if (wsEnd > 2) {
    while (start < wsEnd) {
      const end = Math.min(wsEnd, start + MAX_PIECE);
      out.push(piece.slice(start, end));
      start = end;
    }
  }
  while (start < piece.length) {
    let end = Math.min(piece.length, start + MAX_PIECE + (start === 0 ? wsEnd : 0));
    if (end < piece.length && isHighSurrogate(piece.charCodeAt(end - 1))) end -= 1;
    out.push(piece.slice(start, end));
    start = end;
  }
}

/** Splits text into simulated tokens; `simTokenize(t).join('') === t` for every string. */
export function simTokenize(text: string): string[] {
  const pieces = text.match(PIECE_RE);
  if (pieces === null) return [];
  let long = false;
  for (let i = 0; i < pieces.length; i++) {
    if (pieces[i]!.length > MAX_PIECE) {
      long = true;
      break;
    }
  }
  if (!long) return pieces;
  const out: string[] = [];
  for (const p of pieces) {
    if (p.length <= MAX_PIECE) out.push(p);
    else pushChunks(p, out);
  }
  return out;
}

/** Number of simulated tokens in text (same as simTokenize(text).length). */
export function countSimTokens(text: string): number {
  const pieces = text.match(PIECE_RE);
  if (pieces === null) return 0;
  let n = 0;
  for (const p of pieces) {
    if (p.length <= MAX_PIECE) n++;
    else {
      const tmp: string[] = [];
      pushChunks(p, tmp);
      n += tmp.length;
    }
  }
  return n;
}

const IM_START = '<|im_start|>';
const IM_END = '<|im_end|>';

/**
 * ChatML-style template. It ends with the assistant header (the generation prompt), so the
 * rendering of a conversation is a prefix of the rendering of any continuation of it: that is
 * what lets the simulated prefix cache hit on multi-turn and branched prompts.
 */
export function renderChatPrompt(messages: readonly ChatMessage[]): string {
  let out = '';
  for (const m of messages) out += `${IM_START}${m.role}\n${m.content}${IM_END}\n`;
  return `${out}${IM_START}assistant\n`;
}

const ROLES = new Set<Role>(['system', 'user', 'assistant']);

/**
 * Inverse of renderChatPrompt for raw-prompt endpoints (/v1/completions, /generate). A prompt
 * that is not in the template becomes one user message.
 */
export function parseChatPrompt(prompt: string): ChatMessage[] {
  if (!prompt.startsWith(IM_START)) return [{ role: 'user', content: prompt }];
  const messages: ChatMessage[] = [];
  let pos = 0;
  while (pos < prompt.length) {
    if (!prompt.startsWith(IM_START, pos)) break;
    const nl = prompt.indexOf('\n', pos + IM_START.length);
    if (nl < 0) break;
    const role = prompt.slice(pos + IM_START.length, nl) as Role;
    const end = prompt.indexOf(IM_END, nl + 1);
    if (end < 0) break; // the open generation header
    if (ROLES.has(role)) messages.push({ role, content: prompt.slice(nl + 1, end) });
    pos = end + IM_END.length;
    if (prompt[pos] === '\n') pos++;
  }
  return messages.length > 0 ? messages : [{ role: 'user', content: prompt }];
}

// Token ids. Real servers return integer ids; the simulator derives them from the token text
// (FNV-1a, folded into a Qwen-sized id space) so every process assigns the same id to the same
// token, and remembers recent id -> text pairs so `input_ids` it has handed out can be read back.

const VOCAB_SIZE = 151_936;
const VOCAB_MEMORY = 1 << 20;
const idToText = new Map<number, string>();

/** Deterministic id of a simulated token, the same in every process. */
export function simTokenId(token: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < token.length; i++) {
    h ^= token.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  const id = (h >>> 0) % VOCAB_SIZE;
  if (!idToText.has(id)) {
    if (idToText.size >= VOCAB_MEMORY) {
      const oldest = idToText.keys().next().value;
      if (oldest !== undefined) idToText.delete(oldest);
    }
    idToText.set(id, token);
  }
  return id;
}

/** Ids of every token of text (and remembers them for simDetokenize). */
export function simEncode(text: string): number[] {
  return simTokenize(text).map(simTokenId);
}

/** Text for ids this process has seen; throws naming the first unknown id. */
export function simDetokenize(ids: readonly number[]): string {
  let out = '';
  for (const id of ids) {
    const t = idToText.get(id);
    if (t === undefined)
      throw new Error(`unknown simulated token id ${id} (ids come from /tokenize or earlier outputs)`);
    out += t;
  }
  return out;
}
