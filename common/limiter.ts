// A FIFO bound on work in flight. Pure promise chaining, so it is also deterministic inside a Temporal workflow.

/**
 * At most `max` calls of the returned function run at once; the rest wait in arrival order. A finishing call hands
 * its slot straight to the next waiter, so a caller arriving in between cannot slip past the bound.
 */
export function createLimiter(max: number): <T>(fn: () => Promise<T>) => Promise<T> {
  if (!Number.isInteger(max) || max < 1) throw new RangeError(`limit must be a positive integer, got ${max}`);
  let free = max;
  const waiting: Array<() => void> = [];
  return async <T>(fn: () => Promise<T>): Promise<T> => {
    if (free > 0) free--;
    else await new Promise<void>((resolve) => waiting.push(resolve));
    try {
      return await fn();
    } finally {
      const next = waiting.shift();
      if (next) next();
      else free++;
    }
  };
}

/**
 * As createLimiter, for parts of one piece of work that fails as a whole: once a call has failed, those still waiting
 * are not started (they reject at once), so a failed attempt leaves no backlog to compete with its retry.
 */
export function createFailFastLimiter(max: number): <T>(fn: () => Promise<T>) => Promise<T> {
  const limit = createLimiter(max);
  let failed = false;
  return <T>(fn: () => Promise<T>) =>
    limit(async () => {
      if (failed) throw new Error('not started: an earlier part of the same work failed');
      try {
        return await fn();
      } catch (err) {
        failed = true;
        throw err;
      }
    });
}
