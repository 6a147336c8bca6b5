import { describe, expect, it } from 'vitest';
import { type ReportInput, reportTrajectoryChars } from '../../activities/aggregation.js';
import { estimateTokens } from '../../agent/context.js';
import { reportMessages } from '../../agent/prompts.js';

const input = (over: Partial<ReportInput> = {}): ReportInput => ({
  jobId: 'j',
  rolloutId: 'q/initial-0',
  question: 'Which city hosts the archive?',
  segments: [],
  pool: 'default',
  sampling: { temperature: 0.85, topLogprobs: 16, maxTokensPerTurn: 4096 },
  seed: 1,
  contextWindow: 32_768,
  ...over,
});

describe('report prompt budget', () => {
  it('leaves room for the report within the window, calibrated by the learned ratio', () => {
    for (const ratio of [undefined, 0.8, 1.3]) {
      const i = input(ratio === undefined ? {} : { promptTokenRatio: ratio });
      const chars = reportTrajectoryChars(i)!;
      expect(chars).toBeGreaterThan(0);
      const prompt = estimateTokens(reportMessages(i.question, 'x'.repeat(chars))) * (ratio ?? 1);
      expect(prompt + 4096).toBeLessThanOrEqual(32_768);
    }
    expect(reportTrajectoryChars(input({ promptTokenRatio: 1.3 }))!).toBeLessThan(
      reportTrajectoryChars(input())!,
    );
  });

  it('is unbounded for inputs without a window, and zero when the output alone fills it', () => {
    expect(reportTrajectoryChars(input({ contextWindow: undefined }))).toBeUndefined();
    expect(reportTrajectoryChars(input({ contextWindow: 4000 }))).toBe(0);
  });
});
