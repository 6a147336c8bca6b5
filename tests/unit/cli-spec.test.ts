import { describe, expect, it } from 'vitest';
import { ParallelMuseSpecSchema } from '../../agent/job.js';
import { parallelMuseSpec } from '../../cli/batch.js';

describe('muse run --mode parallel-muse / muse batch options', () => {
  it('carry every trajectory option into the job spec, the context window included', () => {
    const spec = parallelMuseSpec('Where is X?', 'Y', {
      n: 8,
      m: 1,
      k: 2,
      t: 3,
      r: 1,
      branchMode: 'tool_call_ppl',
      aggregator: 'compressed',
      judge: 'exact',
      maxConcurrentRollouts: 16,
      policy: 'resum',
      maxTurns: 40,
      seed: 7,
      pool: 'gpu',
      model: 'm',
      contextWindow: 8192,
    });
    expect(spec.trajectory).toEqual({
      question: 'Where is X?',
      answer: 'Y',
      policy: 'resum',
      maxTurns: 40,
      seed: 7,
      pool: 'gpu',
      model: 'm',
      contextWindow: 8192,
    });
    expect(ParallelMuseSpecSchema.parse(spec).trajectory.contextWindow).toBe(8192);
  });
});
