import { describe, expect, it } from 'vitest';
import { noteModel } from '../../agent/trajectory.js';
import { servedBy } from '../../inference/types.js';

describe('what generated a result', () => {
  it("labels the simulator's text as simulated whatever model name it was given", () => {
    expect(servedBy({ model: 'muse-sim', backend: 'sim' })).toBe(
      'muse-sim (simulator, not a language model)',
    );
    expect(servedBy({ model: 'Qwen/Qwen3-30B-A3B', backend: 'sim' })).toBe(
      'Qwen/Qwen3-30B-A3B (simulator, not a language model)',
    );
  });

  it('names the backend of a real server, and only the model for a member that does not report one', () => {
    expect(servedBy({ model: 'Qwen/Qwen3-30B-A3B', backend: 'openai' })).toBe(
      'Qwen/Qwen3-30B-A3B (openai backend)',
    );
    expect(servedBy({ model: 'm' })).toBe('m');
  });

  it('keeps each label once, in order of first use, ignores an absent one and stops growing at eight', () => {
    let models: string[] = [];
    for (const label of ['a', 'b', undefined, 'a', 'c']) models = noteModel(models, label);
    expect(models).toEqual(['a', 'b', 'c']);
    for (let i = 0; i < 20; i++) models = noteModel(models, `m${i}`);
    expect(models).toHaveLength(8);
    expect(models.slice(0, 3)).toEqual(['a', 'b', 'c']);
  });

  it('does not change the list it was given', () => {
    const models = ['a'];
    noteModel(models, 'b');
    expect(models).toEqual(['a']);
  });
});
