// A stand-in for the Temporal client's call context (withDeadline, withAbortSignal), for unit tests of code that
// must not leave a call in flight when it returns.

/** The two wrappers a call goes through, and how many calls are in flight; an abort ends a call, as a cancel would. */
export function abortableCalls() {
  let inFlight = 0;
  return {
    withDeadline: (_deadline: number, fn: () => Promise<unknown>) => fn(),
    withAbortSignal: (signal: AbortSignal, fn: () => Promise<unknown>) => {
      inFlight++;
      return new Promise((ok, fail) => {
        signal.addEventListener('abort', () => fail(new Error('cancelled')), { once: true });
        fn().then(ok, fail);
      }).finally(() => inFlight--);
    },
    inFlight: () => inFlight,
  };
}
