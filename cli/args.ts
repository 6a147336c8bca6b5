import { InvalidArgumentError } from 'commander';
import { JobSpecError } from '../client/trajectories.js';
import { decimalNumber } from '../common/config.js';

/**
 * An integer flag, within `range` when given. Beyond 2^53 a number is not held exactly (99999999999999999999 would
 * read as 100000000000000000000), so such a value is refused rather than taken for another.
 */
export function intArg(name: string, range?: { min: number; max: number }) {
  return (v: string) => {
    const n = decimalNumber(v);
    if (range && (!Number.isSafeInteger(n) || n < range.min || n > range.max))
      throw new InvalidArgumentError(
        `${name} must be an integer from ${range.min} to ${range.max}, got '${v}'`,
      );
    if (!Number.isSafeInteger(n))
      throw new InvalidArgumentError(
        `${name} must be an integer${Number.isInteger(n) ? ` of at most ${Number.MAX_SAFE_INTEGER} in size` : ''}, got '${v}'`,
      );
    return n;
  };
}

export function positiveIntArg(name: string, max = Number.MAX_SAFE_INTEGER) {
  return (v: string) => {
    const n = decimalNumber(v);
    if (!Number.isSafeInteger(n) || n < 1 || n > max)
      throw new InvalidArgumentError(
        `${name} must be a positive integer${max < Number.MAX_SAFE_INTEGER ? ` of at most ${max}` : ''}, got '${v}'`,
      );
    return n;
  };
}

export function portArg(name: string) {
  return (v: string) => {
    const n = decimalNumber(v);
    if (!Number.isInteger(n) || n < 1 || n > 65_535)
      throw new InvalidArgumentError(`${name} must be a port number (1-65535), got '${v}'`);
    return n;
  };
}

export function numberArg(name: string) {
  return (v: string) => {
    const n = decimalNumber(v);
    if (!Number.isFinite(n)) throw new InvalidArgumentError(`${name} must be a number, got '${v}'`);
    return n;
  };
}

/** A duration in seconds: above 0, or from 0 where 0 switches the thing off (`zeroAllowed`). */
export function secondsArg(name: string, opts: { zeroAllowed?: boolean; max?: number } = {}) {
  return (v: string) => {
    const n = decimalNumber(v);
    if (!Number.isFinite(n) || n < 0 || (n === 0 && !opts.zeroAllowed))
      throw new InvalidArgumentError(
        `${name} must be a number of seconds ${opts.zeroAllowed ? 'of at least 0' : 'above 0'}, got '${v}'`,
      );
    if (opts.max !== undefined && n > opts.max)
      throw new InvalidArgumentError(`${name} must be at most ${opts.max} seconds, got '${v}'`);
    return n;
  };
}

/**
 * An id or name given on the command line: an empty one would only fail later, further from the flag that set it, or
 * (a model name) be taken for none given.
 */
export function idArg(name: string, maxChars?: number) {
  return (v: string) => {
    if (v.trim() === '') throw new InvalidArgumentError(`${name} must not be empty`);
    if (maxChars !== undefined && v.length > maxChars)
      throw new InvalidArgumentError(
        `${name} must be at most ${maxChars} characters, got ${v.length}: the runs under it add ids of their own, and Temporal takes workflow ids of up to 1,000`,
      );
    return v;
  };
}

/** The longest job id or workflow id a command takes (--job, --id): a question's rollouts add about 40 characters. */
export const MAX_RUN_ID_CHARS = 256;

/** Job spec fields as the run and batch flags that set them, so a spec error names what the user typed. */
const SPEC_FIELD_FLAGS: [RegExp, string][] = Object.entries({
  'sampling\\.maxTokensPerTurn': '--max-tokens-per-turn',
  maxTurns: '--max-turns',
  stepsPerRun: '--steps-per-run',
  contextWindow: '--context-window',
  maxConcurrentRollouts: '--max-concurrent-rollouts',
  branchMode: '--branch-mode',
  primaryAggregator: '--aggregator',
  aggregatorPool: '--aggregator-pool',
  aggregatorModel: '--aggregator-model',
}).map(([field, flag]) => [new RegExp(`\\b(?:trajectory\\.)?${field}\\b`, 'g'), flag]);

/** Fields whose names are too short or too common to replace in a message's text: replaced where they name the field. */
const SPEC_PATH_FLAGS: [RegExp, string][] = [
  'answer',
  'policy',
  'judge',
  'date',
  'seed',
  'pool',
  'model',
  'n',
  'm',
  'k',
  't',
  'r',
].map((field) => [
  new RegExp(`(?<=^invalid options: |; )(?:trajectory\\.)?${field}(?=: )`, 'g'),
  `--${field}`,
]);

/** Runs a job spec check, its error (if any) speaking of flags rather than spec fields. */
export function withSpecFlags<T>(check: () => T): T {
  try {
    return check();
  } catch (err) {
    if (!(err instanceof JobSpecError)) throw err;
    let message = err.message.replace(/^invalid job spec: /, 'invalid options: ');
    for (const [field, flag] of [...SPEC_FIELD_FLAGS, ...SPEC_PATH_FLAGS])
      message = message.replace(field, flag);
    throw new JobSpecError(message);
  }
}
