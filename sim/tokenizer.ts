// Simulated tokenizer and chat template.
//
// The simulator needs token counts (usage, context limits, serving cost) and token boundaries
// (per-token logprobs, prefix-cache blocks) that behave like a BPE tokenizer's without shipping a
// vocabulary. Pieces are words with their leading whitespace, single punctuation marks, and
// trailing whitespace; runs longer than 8 characters are cut into chunks, which keeps the
// characters-per-token ratio near real tokenizers (about 3-5 for English prose, lower for code,
// URLs and JSON). Pieces always concatenate back to the input exactly.
// (Words are cut at 8 characters and whitespace runs at 8, so no piece is longer than 10.)

import type { ChatMessage, Role } from '../agent/types.js';
import { fnv1a32 } from '../common/hash.js';
import {
  CHATML_IM_END as IM_END,
  CHATML_IM_START as IM_START,
  renderChatTemplate,
} from '../inference/backends/chat-template.js';

// One native regex pass does all the work (prompts can be many megabytes): a word chunk of at
// most 8 alphanumerics with up to 2 leading whitespace characters, one other character with up
// to 2 leading whitespace characters, or a run of at most 8 whitespace characters. Every
// position matches one alternative, so the pieces tile the text without gaps.
const PIECE_RE = /\s{0,2}[A-Za-z0-9]{1,8}|\s{0,2}[^\sA-Za-z0-9]|\s{1,8}/gu;

/** Splits text into simulated tokens; `simTokenize(t).join('') === t` for every string. */
export function simTokenize(text: string): string[] {
  return text.match(PIECE_RE) ?? [];
}

/** Number of simulated tokens in text (same as simTokenize(text).length). */
export function countSimTokens(text: string): number {
  return text.match(PIECE_RE)?.length ?? 0;
}

/**
 * ChatML, as the servers the simulator stands in for render it (see CHATML_TEMPLATE). It ends with the assistant
 * header, so the rendering of a conversation is a prefix of the rendering of any continuation of it: that is what
 * lets the simulated prefix cache hit on multi-turn and branched prompts.
 */
export function renderChatPrompt(messages: readonly ChatMessage[]): string {
  return renderChatTemplate('chatml', messages);
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

// Token ids. Real servers return integer ids from a fixed vocabulary; the simulator has none, so it interns token
// texts: a token's id is its FNV-1a hash folded into a Qwen-sized id space, or, when another token already holds that
// id (hash collisions are common: a few hundred distinct tokens already collide), the next id past the vocabulary.
// Ids are one-to-one within a server process, which is what `/tokenize` then `input_ids` needs; two processes agree
// on every id except colliding ones. The tables grow with the distinct tokens seen (the synthetic world's words).

const VOCAB_SIZE = 151_936;
const textToId = new Map<string, number>();
const idToText = new Map<number, string>();
let nextExtraId = VOCAB_SIZE;

/** The id of a simulated token in this process (see above). */
export function simTokenId(token: string): number {
  const known = textToId.get(token);
  if (known !== undefined) return known;
  const hashed = fnv1a32(token) % VOCAB_SIZE;
  const id = idToText.has(hashed) ? nextExtraId++ : hashed;
  textToId.set(token, id);
  idToText.set(id, token);
  return id;
}

/** Ids of every token of text (and remembers them for simDetokenize). */
export function simEncode(text: string): number[] {
  return simTokenize(text).map(simTokenId);
}

/** Text for ids this process has seen; throws naming the first unknown id. */
export function simDetokenize(ids: readonly number[]): string {
  return simTokensOf(ids).join('');
}

/** The token each id stands for, one per id: a prompt given as ids is as long as the ids, however they retokenize. */
export function simTokensOf(ids: readonly number[]): string[] {
  return ids.map((id) => {
    const t = idToText.get(id);
    if (t === undefined)
      throw new Error(`unknown simulated token id ${id} (ids come from /tokenize or earlier outputs)`);
    return t;
  });
}
