// The turn toolStep acts on, from the turn's text and what the workflow passes of its finish reason.
import { describe, expect, it } from 'vitest';
import { toolStepTurn } from '../../activities/index.js';

const unclosedCall = '<think>look it up</think>\n<tool_call>\n{"name": "search", "arguments": {"query": "a"';

describe('toolStepTurn', () => {
  it('marks a tool call without its end cut off only when the turn hit its token limit', () => {
    expect(toolStepTurn(unclosedCall, 'length')).toMatchObject({ kind: 'invalid_tool_call', cutOff: true });
    // The workflow passes nothing for a turn the model stopped itself (at its stop string): an invalid call, not a
    // cut-off one.
    const stopped = toolStepTurn(unclosedCall, undefined);
    expect(stopped.kind).toBe('invalid_tool_call');
    expect(stopped).not.toHaveProperty('cutOff');
    expect(toolStepTurn(unclosedCall, 'stop')).not.toHaveProperty('cutOff');
  });

  it('takes an <answer> without its end for one cut off at the token limit, whatever the input says', () => {
    // llmStep takes an unclosed answer the model ended itself as the answer: one that reaches toolStep was cut off.
    for (const finishReason of [undefined, 'stop', 'length'] as const) {
      expect(toolStepTurn('<think>so</think>\n<answer>Par', finishReason)).toMatchObject({
        kind: 'no_action',
        cutOffAnswer: true,
      });
    }
  });

  it('takes an empty <answer> for no answer, which toolStep answers with its own observation', () => {
    expect(toolStepTurn('<think>so</think>\n<answer> </answer>', undefined)).toMatchObject({
      kind: 'no_action',
      emptyAnswer: true,
    });
  });

  it('leaves a closed answer an answer (toolStep refuses it) and a turn without an action no action', () => {
    expect(toolStepTurn('<answer>Paris</answer>', undefined).kind).toBe('answer');
    expect(toolStepTurn('<think>hmm</think>', undefined)).toEqual({ kind: 'no_action', think: 'hmm' });
  });
});
