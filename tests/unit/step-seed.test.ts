import { describe, expect, it } from 'vitest';
import { stepSeed } from '../../workflows/trajectory.js';

describe('stepSeed', () => {
  it('gives every step of a trajectory its own seed, whatever the size of the trajectory seed', () => {
    for (const seed of [0, 7, 2_147_483_646, 1e13, 1_733_000_000_000_000]) {
      const seeds = new Set(Array.from({ length: 200 }, (_, step) => stepSeed(seed, step)));
      expect(seeds.size, `seed ${seed}`).toBe(200);
    }
  });

  it('keeps the seeds it gave before for seeds below its modulus, so a running job samples as it did', () => {
    expect(stepSeed(0, 0)).toBe(1);
    expect(stepSeed(12_345, 3)).toBe((12_345 * 10_007 + 22) % 2_147_483_647);
  });
});
