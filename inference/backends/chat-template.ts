// Chat templates: how a message list becomes one prompt string for raw-prompt endpoints (OpenAI-style
// /completions, SGLang /generate) and for the simulator, which renders ChatML like the servers it stands in for.
import type { ChatMessage } from '../../agent/types.js';

export type ChatTemplateFn = (messages: readonly ChatMessage[]) => string;

/** `message` is written once per message with `{role}` and `{content}` substituted; `generationPrompt` opens the reply. */
export interface SimpleChatTemplate {
  prefix?: string;
  message: string;
  generationPrompt: string;
}

export type ChatTemplate = 'chatml' | SimpleChatTemplate | ChatTemplateFn;

/** ChatML's message delimiters. */
export const CHATML_IM_START = '<|im_start|>';
export const CHATML_IM_END = '<|im_end|>';

/**
 * ChatML, the template of the Qwen family that Tongyi DeepResearch and most open research agents build on. It ends
 * with the assistant header (the generation prompt), so the rendering of a conversation is a prefix of the
 * rendering of any continuation of it: that is what lets prefix caches hit on multi-turn and branched prompts.
 */
export const CHATML_TEMPLATE: SimpleChatTemplate = {
  message: `${CHATML_IM_START}{role}\n{content}${CHATML_IM_END}\n`,
  generationPrompt: `${CHATML_IM_START}assistant\n`,
};

export function renderChatTemplate(template: ChatTemplate, messages: readonly ChatMessage[]): string {
  if (typeof template === 'function') return template(messages);
  const t = template === 'chatml' ? CHATML_TEMPLATE : template;
  const parts: string[] = [t.prefix ?? ''];
  for (const m of messages) {
    // One pass with a callback: message text may itself contain "{role}" or "$&" and must come through verbatim.
    parts.push(
      t.message.replace(/\{(role|content)\}/g, (_, key: string) => (key === 'role' ? m.role : m.content)),
    );
  }
  parts.push(t.generationPrompt);
  return parts.join('');
}
