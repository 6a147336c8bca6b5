// A stand-in for the Temporal client's call context (withDeadline, withAbortSignal), for unit tests of code that
// must not leave a call in flight when it returns.

/** The two wrappers a call goes through, and how many calls are in flight; an abort ends a call, as a cancel would. */
export function abortableCalls() {
  let inFlight = 0;
  return {
    withDeadline: <R>(_deadline: number, fn: () => Promise<R>) => fn(),
    withAbortSignal: <R>(signal: AbortSignal, fn: () => Promise<R>): Promise<R> => {
      inFlight++;
      return new Promise<R>((ok, fail) => {
        // Never removed, as the client's own listener is not.
        signal.addEventListener('abort', () => fail(new Error('cancelled')));
        fn().then(ok, fail);
      }).finally(() => inFlight--);
    },
    inFlight: () => inFlight,
  };
}
