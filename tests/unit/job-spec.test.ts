import { describe, expect, it } from 'vitest';
import { inputActivities } from '../../activities/input.js';
import { MAX_QUESTION_BYTES, TrajectorySpecSchema } from '../../agent/job.js';
import { parseParallelMuseSpec } from '../../client/parallel-muse.js';
import { JobSpecError, parseTrajectorySpec } from '../../client/trajectories.js';

describe('job specs', () => {
  it('fills defaults for a minimal trajectory spec', () => {
    const s = parseTrajectorySpec({ question: ' Who? ' });
    expect(s).toMatchObject({ question: 'Who?', policy: 'react', maxTurns: 64, pool: 'default', seed: 0 });
    expect(s.sampling.topLogprobs).toBe(16);
  });

  it('takes a date for the prompt as a real day of the calendar, and none by default', () => {
    expect(parseTrajectorySpec({ question: 'q' }).date).toBeUndefined();
    expect(parseTrajectorySpec({ question: 'q', date: '2026-12-02' }).date).toBe('2026-12-02');
    expect(() => parseTrajectorySpec({ question: 'q', date: '2 Dec 2026' })).toThrow(
      /date: date must be YYYY-MM-DD/,
    );
    expect(() => parseTrajectorySpec({ question: 'q', date: '2026-02-30' })).toThrow(
      /date: date is not a day of the calendar/,
    );
    expect(parseTrajectorySpec({ question: 'q', date: '2028-02-29' }).date).toBe('2028-02-29');
    expect(parseTrajectorySpec({ question: 'q', date: '0024-02-29' }).date).toBe('0024-02-29');
  });

  it('refuses a question too large for the workflow inputs it travels in, naming its size and the limit', () => {
    // Three bytes a character: 100,000 characters are 300,000 bytes, past the 262,144-byte limit.
    expect(() => parseTrajectorySpec({ question: '問'.repeat(100_000) })).toThrow(
      /^invalid job spec: question: question is 300,000 bytes; at most 262,144 \(256 KiB\)/,
    );
    expect(() => parseParallelMuseSpec({ trajectory: { question: 'q'.repeat(300_000) } })).toThrow(
      /trajectory\.question: question is 300,000 bytes/,
    );
    expect(parseTrajectorySpec({ question: 'q'.repeat(MAX_QUESTION_BYTES) }).question).toHaveLength(
      MAX_QUESTION_BYTES,
    );
    // Not in the schema: a run an earlier version started with such a question replays its input check as it ran.
    expect(TrajectorySpecSchema.safeParse({ question: 'q'.repeat(300_000) }).success).toBe(true);
  });

  it('refuses a question that the rollouts started at once would carry past one request to Temporal', () => {
    const question = 'q'.repeat(250 * 1024);
    const spec = (maxConcurrentRollouts: number) => ({
      n: 16,
      branchMode: 'none',
      maxConcurrentRollouts,
      trajectory: { question, contextWindow: 1_000_000, maxTurns: 4 },
    });
    expect(() => parseParallelMuseSpec(spec(16))).toThrow(
      /trajectory\.question: question is 256,000 bytes, and the 16 rollouts started at once .* about 3\.9 MB in one request, past the 3 MB allowed .*: lower maxConcurrentRollouts/,
    );
    expect(parseParallelMuseSpec(spec(8)).maxConcurrentRollouts).toBe(8);
  });

  it('names the offending field', () => {
    expect(() => parseTrajectorySpec({ question: 'q', maxTurns: 0 })).toThrow(/maxTurns/);
    expect(() => parseTrajectorySpec({ question: 'q', pool: 'a b' })).toThrow(/pool/);
    expect(() => parseTrajectorySpec({ question: 'q', sampling: { topLogprobs: 50 } })).toThrow(
      /sampling\.topLogprobs/,
    );
    expect(() => parseTrajectorySpec({ question: 'q', colour: 'red' })).toThrow(JobSpecError);
    expect(() => parseTrajectorySpec({ question: 'q', colour: 'red' })).toThrow(/colour/);
    // Inside sampling too: a misspelled setting would leave its default in place.
    expect(() => parseTrajectorySpec({ question: 'q', sampling: { temprature: 0.2 } })).toThrow(
      "invalid job spec: sampling: unknown setting(s) 'temprature' (known: temperature, topLogprobs, maxTokensPerTurn)",
    );
    expect(() => parseParallelMuseSpec({ trajectory: { question: 'q', sampling: { top_k: 5 } } })).toThrow(
      /trajectory\.sampling: unknown setting\(s\) 'top_k'/,
    );
  });

  it('refuses a blank ground-truth answer, which would score every prediction wrong', () => {
    for (const answer of ['', '  '])
      expect(() => parseTrajectorySpec({ question: 'q', answer })).toThrow(/answer must not be empty/);
    // Kept as given: a batch compares it with the answer its result was judged against.
    expect(parseTrajectorySpec({ question: 'q', answer: ' Paris ' }).answer).toBe(' Paris ');
  });

  it('rejects a turn budget that cannot fit the context window', () => {
    expect(() =>
      parseTrajectorySpec({ question: 'q', contextWindow: 2048, sampling: { maxTokensPerTurn: 4096 } }),
    ).toThrow(/sampling\.maxTokensPerTurn: .*contextWindow/);
  });

  it('rejects a window whose room beside a full turn cannot hold the first prompt, with the numbers', () => {
    // 4500 - 4096 leaves 404 tokens; the system prompt alone takes more: the run would end before its first turn.
    for (const policy of ['react', 'resum', 'iterresearch'] as const)
      expect(() => parseTrajectorySpec({ question: 'q', policy, contextWindow: 4500 })).toThrow(
        new RegExp(
          `contextWindow: contextWindow 4500 leaves 404 tokens beside sampling.maxTokensPerTurn 4096, and the first prompt \\(the ${policy} system prompt and the question\\) takes about \\d+: raise contextWindow or lower sampling.maxTokensPerTurn`,
        ),
      );
    expect(
      parseTrajectorySpec({ question: 'q', contextWindow: 4500, sampling: { maxTokensPerTurn: 3000 } }),
    ).toMatchObject({ contextWindow: 4500 });
    expect(() => parseParallelMuseSpec({ trajectory: { question: 'q', contextWindow: 4500 } })).toThrow(
      /invalid job spec: trajectory\.contextWindow: contextWindow 4500 leaves 404 tokens/,
    );
    // The schema alone lets it through: runs checked in workflow code replay that check, and must still pass it.
    expect(TrajectorySpecSchema.safeParse({ question: 'q', contextWindow: 4500 }).success).toBe(true);
    // A long question counts too.
    expect(() =>
      parseTrajectorySpec({
        question: 'why '.repeat(5_000),
        contextWindow: 8192,
        sampling: { maxTokensPerTurn: 4096 },
      }),
    ).toThrow(/takes about \d+: raise contextWindow/);
  });

  it('rejects a ParallelMuse budget that cannot fit the branching plan, with the numbers', () => {
    expect(() => parseParallelMuseSpec({ n: 12, r: 2, trajectory: { question: 'q' } })).toThrow(/N=12.*13/);
    expect(parseParallelMuseSpec({ n: 13, r: 2, trajectory: { question: 'q' } }).r).toBe(2);
  });

  it('refuses a plan whose history could pass what Temporal keeps for one workflow, before it starts', () => {
    const pm = (o: Record<string, unknown>, question: string, t: Record<string, unknown> = {}) =>
      parseParallelMuseSpec({ ...o, trajectory: { question, ...t } });
    // The reference defaults, and N=1024 with a question of a few kB: fine.
    expect(() => pm({}, 'Which city?')).not.toThrow();
    expect(() => pm({ n: 1024 }, 'x'.repeat(2000))).not.toThrow();
    // A long question carried by every rollout's start and report, 1024 times.
    expect(() => pm({ n: 1024 }, 'x'.repeat(20_000))).toThrow(
      /history to about 67\.3 MB, past the 40\.0 MB a question may use .*\(20000 bytes\)/,
    );
    // Each rollout's answer rides whole in its result: 1024 answers of up to 8192 CJK characters are 25 MB of it.
    expect(() => pm({ n: 1024 }, 'x'.repeat(7000))).toThrow(/about 42\.0 MB/);
    // Every rollout's step log, a segment per workflow run, in its result and its report step: 1024 rollouts of
    // 4096 steps fit at 200 steps a run, not at 20.
    expect(() => pm({ n: 1024 }, 'Which city?', { maxTurns: 4096 })).not.toThrow();
    expect(() => pm({ n: 1024 }, 'Which city?', { maxTurns: 4096, stepsPerRun: 20 })).toThrow(
      /about 80\.\d MB.*raise stepsPerRun/,
    );
    // Parents keep branching facts for their first 512 steps only, however long they run.
    expect(() => pm({ n: 256, m: 4, k: 2, t: 4, r: 3 }, 'Which city?', { maxTurns: 4096 })).not.toThrow();
    // Six rounds of 64 branches of 512-step rollouts, each later round carrying its parents' step records.
    expect(() => pm({ n: 388, m: 4, k: 4, t: 4, r: 6 }, 'Which city?', { maxTurns: 512 })).toThrow(
      /lower N, R or maxTurns/,
    );
  });

  it('rejects an aggregator named twice', () => {
    expect(() =>
      parseParallelMuseSpec({
        aggregators: ['compressed', 'compressed', 'majority'],
        trajectory: { question: 'q' },
      }),
    ).toThrow(/aggregators: aggregators must not name one twice/);
  });

  it('rejects a primary aggregator that is not among the aggregators, naming both fields', () => {
    // Not given, it is the default's: the message says so, rather than blame a field the user never set.
    expect(() => parseParallelMuseSpec({ aggregators: ['majority'], trajectory: { question: 'q' } })).toThrow(
      "primaryAggregator: 'compressed' is not one of aggregators [majority]: name one of them as primaryAggregator (it is 'compressed' when not given)",
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

describe('the recorded input check of a workflow started by hand', () => {
  it('refuses a window that cannot hold the first prompt, naming the field', async () => {
    const input = (trajectory: object) => ({ spec: trajectory, jobId: 'j' });
    await expect(
      inputActivities.checkWorkflowInput({
        workflow: 'trajectory',
        input: input({ question: 'q', contextWindow: 4500 }),
      }),
    ).rejects.toThrow(
      /^trajectory: invalid input: spec\.contextWindow: contextWindow 4500 leaves 404 tokens/,
    );
    await expect(
      inputActivities.checkWorkflowInput({
        workflow: 'parallelMuse',
        input: input({ trajectory: { question: 'q', contextWindow: 4500 } }),
      }),
    ).rejects.toThrow(/^parallelMuse: invalid input: spec\.trajectory\.contextWindow: contextWindow 4500/);
    await expect(
      inputActivities.checkWorkflowInput({ workflow: 'trajectory', input: input({ question: 'q' }) }),
    ).resolves.toMatchObject({ spec: { contextWindow: 131_072 } });
    // A question too large, started without the clients (by hand, another SDK): refused by name too.
    await expect(
      inputActivities.checkWorkflowInput({
        workflow: 'trajectory',
        input: input({ question: 'q'.repeat(300_000), contextWindow: 1_000_000 }),
      }),
    ).rejects.toThrow(/^trajectory: invalid input: spec\.question: question is 300,000 bytes/);
    await expect(
      inputActivities.checkWorkflowInput({
        workflow: 'parallelMuse',
        input: input({ trajectory: { question: 'q'.repeat(300_000), contextWindow: 1_000_000 } }),
      }),
    ).rejects.toThrow(/^parallelMuse: invalid input: spec\.trajectory\.question: question is 300,000 bytes/);
  });
});
