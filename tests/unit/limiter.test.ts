import { describe, expect, it } from 'vitest';
import { createFailFastLimiter, createLimiter } from '../../common/limiter.js';

describe('createLimiter', () => {
  it('hands a finishing slot to the waiter, so a caller arriving in between cannot slip past the bound', async () => {
    const limit = createLimiter(1);
    let running = 0;
    let peak = 0;
    const enter = () => {
      running++;
      peak = Math.max(peak, running);
    };
    const exit = () => {
      running--;
    };
    const short = () => {
      enter();
      return Promise.resolve().then(exit);
    };
    let finishFirst!: () => void;
    const first = new Promise<void>((r) => {
      finishFirst = r;
    });
    // Registered before the limiter awaits `first`: `exit` runs just before the limiter's own continuation, and the
    // late caller just after it, before the woken waiter has resumed.
    const late = first.then(exit).then(() => limit(short));
    const done = [
      limit(() => {
        enter();
        return first;
      }),
      limit(short),
    ];
    finishFirst();
    await Promise.all([...done, late]);
    expect(peak).toBe(1);
    expect(running).toBe(0);
  });

  it('rejects a limit below one', () => {
    expect(() => createLimiter(0)).toThrow(/positive integer/);
  });
});

describe('createFailFastLimiter', () => {
  it('starts none of the calls still waiting once one has failed, and keeps the bound until then', async () => {
    const limit = createFailFastLimiter(2);
    const started: number[] = [];
    const calls = Array.from({ length: 6 }, (_, i) =>
      limit(async () => {
        started.push(i);
        await new Promise((r) => setTimeout(r, 5));
        if (i === 1) throw new Error('read failed');
        return i;
      }),
    );
    const settled = await Promise.allSettled(calls);
    // 0 and 1 ran together; 1 failed, and the one that had taken 0's slot meanwhile (2) was the last started.
    expect(started).toEqual([0, 1, 2]);
    expect(settled.map((s) => s.status)).toEqual([
      'fulfilled',
      'rejected',
      'fulfilled',
      'rejected',
      'rejected',
      'rejected',
    ]);
    expect((settled[3] as PromiseRejectedResult).reason.message).toMatch(/not started/);
  });
});
