import { describe, expect, it } from 'vitest';
import { parseParallelMuseSpec } from '../../client/parallel-muse.js';
import { JobSpecError, parseTrajectorySpec } from '../../client/trajectories.js';

describe('job specs', () => {
  it('fills defaults for a minimal trajectory spec', () => {
    const s = parseTrajectorySpec({ question: ' Who? ' });
    expect(s).toMatchObject({ question: 'Who?', policy: 'react', maxTurns: 64, pool: 'default', seed: 0 });
    expect(s.sampling.topLogprobs).toBe(16);
  });

  it('names the offending field', () => {
    expect(() => parseTrajectorySpec({ question: 'q', maxTurns: 0 })).toThrow(/maxTurns/);
    expect(() => parseTrajectorySpec({ question: 'q', pool: 'a b' })).toThrow(/pool/);
    expect(() => parseTrajectorySpec({ question: 'q', sampling: { topLogprobs: 50 } })).toThrow(
      /sampling\.topLogprobs/,
    );
    expect(() => parseTrajectorySpec({ question: 'q', colour: 'red' })).toThrow(JobSpecError);
  });

  it('rejects a turn budget that cannot fit the context window', () => {
    expect(() =>
      parseTrajectorySpec({ question: 'q', contextWindow: 2048, sampling: { maxTokensPerTurn: 4096 } }),
    ).toThrow(/sampling\.maxTokensPerTurn: .*contextWindow/);
  });

  it('rejects a ParallelMuse budget that cannot fit the branching plan, with the numbers', () => {
    expect(() => parseParallelMuseSpec({ n: 12, r: 2, trajectory: { question: 'q' } })).toThrow(/N=12.*13/);
    expect(parseParallelMuseSpec({ n: 13, r: 2, trajectory: { question: 'q' } }).r).toBe(2);
  });

  it('rejects a primary aggregator that is not among the aggregators, naming both fields', () => {
    expect(() => parseParallelMuseSpec({ aggregators: ['majority'], trajectory: { question: 'q' } })).toThrow(
      /primaryAggregator: .*aggregators/,
    );
    expect(() =>
      parseParallelMuseSpec({
        aggregators: ['compressed', 'majority'],
        primaryAggregator: 'min_uncertainty',
        trajectory: { question: 'q' },
      }),
    ).toThrow(JobSpecError);
    const s = parseParallelMuseSpec({
      aggregators: ['majority'],
      primaryAggregator: 'majority',
      trajectory: { question: 'q' },
    });
    expect(s.primaryAggregator).toBe('majority');
  });
});
