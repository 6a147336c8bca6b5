import { describe, expect, it } from 'vitest';
import { createLimiter } from '../../common/limiter.js';

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
