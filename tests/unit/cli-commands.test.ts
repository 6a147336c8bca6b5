// The `muse` commands' own checks, run through commander with no server up (the Temporal address points nowhere),
// so an error that is not about the options shows up as "cannot reach the Temporal server".
import { spawn } from 'node:child_process';
import { getEventListeners } from 'node:events';
import { closeSync, openSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { type Client, WorkflowFailedError } from '@temporalio/client';
import {
  ApplicationFailure,
  RetryState,
  WorkflowExecutionAlreadyStartedError,
  WorkflowNotFoundError,
} from '@temporalio/common';
import type { Command } from 'commander';
import { afterEach, beforeEach, describe, expect, it, onTestFinished, vi } from 'vitest';
import { writeJsonLines } from '../../cli/content.js';
import { buildProgram } from '../../cli/program.js';
import { modelsLine, noticeOnInterrupt, oneLine, progressBar, statusResult } from '../../cli/render.js';
import { elsewhere, tellNatsConnection } from '../../cli/services.js';
import { runningRunsOfJob } from '../../client/content.js';
import { failureMessage, followTrajectory } from '../../client/trajectories.js';
import { loadConfig } from '../../common/config.js';
import { withCallSignal } from '../../common/temporal.js';
import { createBackend } from '../../inference/backends/index.js';
import { sdkLogLevel } from '../../workers/rollout-worker.js';
import { abortableCalls } from '../helpers/fake-temporal.js';
import { tempDir } from '../helpers/temp.js';

let dir: string;

/** `muse pool serve` with the given options: `line` split at spaces, then `rest` as they are (values with spaces). */
const serve = (line: string, ...rest: string[]) => muse('pool', 'serve', ...line.split(' '), ...rest);

function muse(...args: string[]) {
  const program = buildProgram();
  // Errors throw instead of exiting, and help and usage go nowhere, in every command at every depth.
  const quiet = (c: Command): void => {
    c.exitOverride().configureOutput({ writeErr: () => {}, writeOut: () => {} });
    c.commands.forEach(quiet);
  };
  quiet(program);
  return program.parseAsync(['--data-dir', dir, ...args], { from: 'user' });
}

beforeEach(() => {
  dir = tempDir('muse-cli-');
  vi.stubEnv('MUSE_TEMPORAL_ADDRESS', '127.0.0.1:1');
  vi.stubEnv('MUSE_NATS_URL', 'nats://127.0.0.1:1');
});
afterEach(() => vi.unstubAllEnvs());

describe('options are checked before connecting', () => {
  it('muse run --policy bogus', async () => {
    await expect(muse('run', '--policy', 'bogus', 'q')).rejects.toThrow(/policy: Invalid option/);
  });

  it('a spec error names the flag that set the field, not the field', async () => {
    await expect(muse('run', '--seed', '-1', 'q')).rejects.toThrow(/^invalid options: --seed: /);
    await expect(muse('run', '--pool', 'a.b', 'q')).rejects.toThrow(
      /^invalid options: --pool: pool must be letters, digits, _ or -/,
    );
    await expect(muse('run', '--mode', 'parallel-muse', '--seed', '-1', 'q')).rejects.toThrow(
      /^invalid options: --seed: /,
    );
  });

  it('muse run --mode parallel-muse with a bad option or a budget that cannot fit', async () => {
    await expect(muse('run', '--mode', 'parallel-muse', '--policy', 'bogus', 'q')).rejects.toThrow(
      /^invalid options: --policy: Invalid option/,
    );
    await expect(muse('run', '--mode', 'parallel-muse', '--n', '5', '--r', '2', 'q')).rejects.toThrow(/N=5/);
  });

  it('muse batch with a bad option', async () => {
    const q = join(dir, 'q.jsonl');
    writeFileSync(q, '{"question": "a"}\n');
    await expect(
      muse('batch', q, '--out', join(dir, 'out.jsonl'), '--branch-mode', 'sideways'),
    ).rejects.toThrow(/^invalid options: --branch-mode: Invalid option/);
  });

  it('a zero or negative number is refused, not replaced by a default', async () => {
    await expect(muse('run', '--context-window', '0', 'q')).rejects.toThrow(
      /--context-window must be a positive integer, got '0'/,
    );
    await expect(muse('run', '--date', '02/12/2026', 'q')).rejects.toThrow(
      /^invalid options: --date: date must be YYYY-MM-DD$/,
    );
    await expect(muse('run', '--max-turns', '-1', 'q')).rejects.toThrow(
      /--max-turns must be a positive integer/,
    );
    // Plain decimal only: an empty value is not 0, nor is 0x10 sixteen or 1e3 a thousand.
    await expect(muse('run', '--seed', '', 'q')).rejects.toThrow(/--seed must be an integer, got ''/);
    await expect(muse('run', '--max-turns', '0x10', 'q')).rejects.toThrow(
      /--max-turns must be a positive integer, got '0x10'/,
    );
    await expect(muse('run', '--max-turns', '1e3', 'q')).rejects.toThrow(/got '1e3'/);
    // Decimals as people write them are numbers.
    const listening = process.listenerCount('SIGTERM');
    await expect(
      muse('pool', 'serve', '--backend', 'sim', '--time-scale', '.5', '--max-batch', '+4'),
    ).rejects.toThrow(/cannot reach NATS/);
    // A start that failed leaves no handler behind.
    expect(process.listenerCount('SIGTERM')).toBe(listening);
    await expect(muse('cancel', 'x', '--wait', ' ')).rejects.toThrow(/--wait must be an integer, got ' '/);
    const q = join(dir, 'q.jsonl');
    writeFileSync(q, '{"question": "a"}\n');
    await expect(muse('batch', q, '--out', join(dir, 'out.jsonl'), '--concurrency', '0')).rejects.toThrow(
      /--concurrency must be a positive integer, got '0'/,
    );
  });

  it('muse batch refuses an empty --out and an over-long --job before any question starts', async () => {
    const q = join(dir, 'q.jsonl');
    writeFileSync(q, '{"question": "a"}\n');
    await expect(muse('batch', q, '--out', '')).rejects.toThrow(/--out must not be empty/);
    await expect(
      muse('batch', q, '--out', join(dir, 'out.jsonl'), '--job', 'j'.repeat(1200)),
    ).rejects.toThrow(/--job must be at most 256 characters, got 1200/);
    await expect(muse('run', '--id', 'i'.repeat(300), 'q')).rejects.toThrow(
      /--id must be at most 256 characters, got 300/,
    );
    expect(readdirSync(dir).filter((f) => f.endsWith('.job'))).toEqual([]);
  });

  it('muse run refuses ParallelMuse options without --mode parallel-muse instead of ignoring them', async () => {
    await expect(muse('run', '--n', '8', '--branch-mode', 'none', 'q')).rejects.toThrow(
      '--n, --branch-mode only apply with --mode parallel-muse',
    );
    await expect(muse('run', '--n', '8', 'q')).rejects.toThrow('--n only applies with --mode parallel-muse');
  });

  it('muse run --judge llm without --answer is refused: there is nothing to judge against', async () => {
    await expect(muse('run', '--mode', 'parallel-muse', '--judge', 'llm', 'q')).rejects.toThrow(
      /^--judge llm needs --answer/,
    );
    await expect(
      muse('run', '--mode', 'parallel-muse', '--judge', 'llm', '--answer', 'Paris', 'q'),
    ).rejects.toThrow(/cannot reach the Temporal server/);
  });

  it('muse run --aggregator-pool must be a pool name, as --pool must', async () => {
    await expect(muse('run', '--mode', 'parallel-muse', '--aggregator-pool', 'a b.c', 'q')).rejects.toThrow(
      /--aggregator-pool: pool must be letters, digits, _ or -/,
    );
  });
});

describe('spec errors name the flags', () => {
  it('a small --context-window needs a smaller --max-tokens-per-turn, and the error says so in flags', async () => {
    await expect(muse('run', '--context-window', '1000', 'q')).rejects.toThrow(
      /^invalid options: --max-tokens-per-turn: --max-tokens-per-turn must be smaller than --context-window \(a turn must fit the window; --max-tokens-per-turn is 4096 unless set\)$/,
    );
    // With both set sensibly, the options pass and only the server is missing.
    await expect(
      muse('run', '--context-window', '1000', '--max-tokens-per-turn', '256', 'q'),
    ).rejects.toThrow(/cannot reach the Temporal server/);
  });
});

describe('spec errors name the short flags where they name the field', () => {
  it('--policy, --judge, --n and --r, in run and in batch', async () => {
    await expect(muse('run', '--policy', 'foo', 'q')).rejects.toThrow(
      /^invalid options: --policy: Invalid option/,
    );
    await expect(muse('run', '--mode', 'parallel-muse', '--judge', 'bogus', 'q')).rejects.toThrow(
      /^invalid options: --judge: Invalid option/,
    );
    await expect(muse('run', '--mode', 'parallel-muse', '--n', '100000', 'q')).rejects.toThrow(
      /^invalid options: --n: Too big: expected number to be <=1024$/,
    );
    await expect(muse('run', '--mode', 'parallel-muse', '--r', '9', '--policy', 'foo', 'q')).rejects.toThrow(
      /^invalid options: --policy: Invalid option: .*; --r: Too big/,
    );
    const q = join(dir, 'q.jsonl');
    writeFileSync(q, '{"question": "a"}\n');
    await expect(muse('batch', q, '--out', join(dir, 'out.jsonl'), '--policy', 'foo')).rejects.toThrow(
      /^invalid options: --policy: Invalid option/,
    );
  });
});

describe('number and environment checks', () => {
  it('refuses a question count, worker concurrency or port that cannot work', async () => {
    await expect(muse('sim', 'questions', '--n', '0')).rejects.toThrow(
      /--n must be a positive integer of at most 100000, got '0'/,
    );
    await expect(muse('sim', 'questions', '--n', '100000000')).rejects.toThrow(
      /at most 100000, got '100000000'/,
    );
    // The simulator's seeds are 32 bits: -1 would give the questions of 4294967295, and 2^32 + 1 those of 1.
    await expect(muse('sim', 'questions', '--seed', '-1')).rejects.toThrow(
      /--seed must be an integer from 0 to 4294967295, got '-1'/,
    );
    await expect(muse('sim', 'questions', '--seed', '4294967297')).rejects.toThrow(/from 0 to 4294967295/);
    // Past 2^53 a number is not held exactly: refused, not read as another.
    await expect(muse('run', '--seed', '99999999999999999999', 'q')).rejects.toThrow(
      /--seed must be an integer of at most 9007199254740991 in size, got '99999999999999999999'/,
    );
    await expect(muse('worker', '--concurrency', '-5')).rejects.toThrow(
      /--concurrency must be a positive integer/,
    );
    await expect(muse('up', '--temporal-port', '99999')).rejects.toThrow(
      /--temporal-port must be a port number \(1-65535\), got '99999'/,
    );
  });

  it('MUSE_LOG_LEVEL takes the SDK levels in either case, and names itself when wrong', () => {
    expect(sdkLogLevel(undefined)).toBe('WARN');
    expect(sdkLogLevel('debug')).toBe('DEBUG');
    expect(() => sdkLogLevel('verbose')).toThrow(
      /MUSE_LOG_LEVEL must be one of TRACE, DEBUG, INFO, WARN, ERROR, got 'verbose'/,
    );
  });
});

describe('muse batch', () => {
  it('has no --answer: answers come from the questions file', async () => {
    const q = join(dir, 'q.jsonl');
    writeFileSync(q, '{"question": "a"}\n');
    await expect(muse('batch', q, '--out', join(dir, 'out.jsonl'), '--answer', 'x')).rejects.toThrow(
      /unknown option '--answer'/,
    );
  });

  it('a questions file that is missing, holds no question, or is also --out fails before connecting', async () => {
    await expect(muse('batch', join(dir, 'none.jsonl'), '--out', join(dir, 'out.jsonl'))).rejects.toThrow(
      /^the questions file: cannot read .*none\.jsonl: ENOENT/,
    );
    const bad = join(dir, 'bad.jsonl');
    writeFileSync(bad, '{"question": oops}\n\n');
    await expect(muse('batch', bad, '--out', join(dir, 'out.jsonl'))).rejects.toThrow(
      /bad\.jsonl holds no question to run/,
    );
    const q = join(dir, 'q.jsonl');
    writeFileSync(q, '{"question": "a"}\n');
    await expect(muse('batch', q, '--out', q)).rejects.toThrow(/--out .*q\.jsonl is the questions file/);
  });

  it('a results path that cannot be written fails before connecting, named by --out', async () => {
    const q = join(dir, 'q.jsonl');
    writeFileSync(q, '{"question": "a"}\n');
    // Under a file, where no directory can be made.
    await expect(muse('batch', q, '--out', join(q, 'out.jsonl'))).rejects.toThrow(
      new RegExp(`^--out: cannot write ${q}/out\\.jsonl: E(EXIST|NOTDIR)`),
    );
    await expect(muse('batch', q, '--out', `${join(dir, 'results')}/`)).rejects.toThrow(
      /^--out: .*results\/ is a directory; name a file$/,
    );
    await expect(muse('batch', q, '--out', dir)).rejects.toThrow(/^--out: .* is a directory; name a file$/);
  });

  it('export --out naming a directory is refused at once, by flag, and leaves nothing in it', async () => {
    const into = tempDir('muse-export-dir-');
    await expect(muse('export', 't1', '--out', into)).rejects.toThrow(
      /--out: .* is a directory; name a file/,
    );
    expect(readdirSync(into)).toEqual([]);
  });

  it('an empty --job or --id is refused at the flag, not where it would fail later', async () => {
    const q = join(dir, 'q.jsonl');
    writeFileSync(q, '{"question": "a"}\n');
    await expect(muse('batch', q, '--out', join(dir, 'out.jsonl'), '--job', '')).rejects.toThrow(
      /--job must not be empty/,
    );
    await expect(muse('run', '--id', ' ', 'Which city?')).rejects.toThrow(/--id must not be empty/);
    // An empty model name would be taken for none given, and the pool's own model used without a word.
    await expect(muse('run', '--model', '', 'Which city?')).rejects.toThrow(/--model must not be empty/);
    await expect(
      muse('run', '--mode', 'parallel-muse', '--aggregator-model', '', 'Which city?'),
    ).rejects.toThrow(/--aggregator-model must not be empty/);
    await expect(muse('status', '')).rejects.toThrow(/<id> must not be empty/);
    await expect(muse('export', ' ')).rejects.toThrow(/<id> must not be empty/);
    // Not taken for no --out (standard output).
    await expect(muse('export', 'traj-1', '--out', '')).rejects.toThrow(/--out must not be empty/);
    await expect(muse('run', '--answer', '', 'q')).rejects.toThrow(/^invalid options: --answer: /);
    await expect(muse('content', 'delete', '')).rejects.toThrow(/<jobId> must not be empty/);
    await expect(muse('--data-dir', '', 'status', 'x')).rejects.toThrow(/--data-dir must not be empty/);
    await expect(muse('--config', '', 'status', 'x')).rejects.toThrow(/--config must not be empty/);
  });

  it('output piped into a reader that stops early (| head) ends quietly, not with an EPIPE stack trace', async () => {
    const child = spawn(
      process.execPath,
      [fileURLToPath(new URL('../../bin/muse.js', import.meta.url)), 'sim', 'questions', '--n', '3000'],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    // Not left writing if the test fails or times out.
    onTestFinished(() => {
      child.kill('SIGKILL');
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    // The reader takes one chunk and goes away, as head does.
    child.stdout.once('data', () => child.stdout.destroy());
    // 'close', not 'exit': the process can exit with its last stderr still in the pipe, unread.
    const code = await new Promise<number | null>((ok) => child.on('close', ok));
    expect(stderr).not.toMatch(/EPIPE|Error/);
    expect(code).toBe(0);
  }, 20_000);

  it('muse pool serve told to stop while it is still connecting exits, instead of going on to serve', async () => {
    // A server that takes the connection and never speaks: the member is stuck connecting until it is stopped.
    let connected: () => void;
    const reached = new Promise<void>((ok) => (connected = ok));
    const silent = createServer((socket) => {
      onTestFinished(() => {
        socket.destroy();
      });
      connected();
    });
    await new Promise<void>((ok) => silent.listen(0, '127.0.0.1', ok));
    onTestFinished(() => new Promise<void>((ok) => silent.close(() => ok())));
    const port = (silent.address() as AddressInfo).port;
    const child = spawn(
      process.execPath,
      [fileURLToPath(new URL('../../bin/muse.js', import.meta.url)), 'pool', 'serve', '--backend', 'sim'],
      {
        stdio: ['ignore', 'ignore', 'pipe'],
        env: { ...process.env, MUSE_NATS_URL: `nats://127.0.0.1:${port}` },
      },
    );
    onTestFinished(() => {
      child.kill('SIGKILL');
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const closed = new Promise<[number | null, string | null]>((ok) =>
      child.on('close', (code, signal) => ok([code, signal])),
    );
    await reached;
    child.kill('SIGTERM');
    // Exited by its own handler: a process without one dies of the signal (and as PID 1 would ignore it).
    expect(await closed).toEqual([0, null]);
    expect(stderr).toContain('stopped before the member started serving');
  }, 20_000);

  it('output that cannot be written (a full disk) fails in one line, not a stack trace', async () => {
    const full = openSync('/dev/full', 'w');
    onTestFinished(() => closeSync(full));
    const child = spawn(
      process.execPath,
      [fileURLToPath(new URL('../../bin/muse.js', import.meta.url)), 'sim', 'questions', '--n', '2'],
      { stdio: ['ignore', full, 'pipe'] },
    );
    onTestFinished(() => {
      child.kill('SIGKILL');
    });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((ok) => child.on('close', ok));
    expect(code).toBe(1);
    expect(stderr.trim()).toMatch(/^muse: .*ENOSPC/);
    expect(stderr.trim().split('\n')).toHaveLength(1);
  }, 20_000);

  it('muse export --out replaces an earlier export, and any other file only with --force', async () => {
    const questions = join(dir, 'questions.jsonl');
    writeFileSync(questions, '{"question": "Which river?", "answer": "Rhine"}\n');
    await expect(muse('export', 'traj-1', '--out', questions)).rejects.toThrow(
      /^--out: .*questions\.jsonl exists and is not an export \(its first line is not an exported step\); pass --force/,
    );
    expect(readFileSync(questions, 'utf8')).toBe('{"question": "Which river?", "answer": "Rhine"}\n');
    // Past the check: the export goes on to connect, which fails here (no server).
    await expect(muse('export', 'traj-1', '--out', questions, '--force')).rejects.toThrow(/cannot reach/);
    const earlier = join(dir, 'earlier.jsonl');
    const step = { step: 0, kind: 'tool', actionPreview: 'search', turn: 'x'.repeat(200_000) };
    writeFileSync(earlier, `${JSON.stringify(step)}\n${JSON.stringify({ ...step, step: 1 })}\n`);
    await expect(muse('export', 'traj-1', '--out', earlier)).rejects.toThrow(/cannot reach/);
    const empty = join(dir, 'empty.jsonl');
    writeFileSync(empty, '');
    await expect(muse('export', 'traj-1', '--out', empty)).rejects.toThrow(/cannot reach/);
  });

  it('muse export --out into a directory that does not exist fails by name, before connecting', async () => {
    await expect(muse('export', 'traj-1', '--out', join(dir, 'no', 'x.jsonl'))).rejects.toThrow(
      /^--out: cannot write .*no\/x\.jsonl: ENOENT/,
    );
  });
});

describe('muse content delete', () => {
  it("finds a run under the job's own id that the listing does not show yet", async () => {
    const described = { type: 'trajectory', status: { name: 'RUNNING' } };
    const client = {
      workflow: {
        // The visibility listing a moment behind: the run just started is not in it.
        list: async function* () {},
        getHandle: (id: string) => ({
          describe: async () => {
            if (id === 'job-down') throw new Error('14 UNAVAILABLE: connection refused');
            if (id !== 'job-1') throw new WorkflowNotFoundError('workflow not found', id, undefined);
            return described;
          },
        }),
      },
    } as unknown as Client;
    expect(await runningRunsOfJob(client, 'job-1')).toEqual(['job-1']);
    expect(await runningRunsOfJob(client, 'job-2')).toEqual([]);
    described.status.name = 'COMPLETED';
    expect(await runningRunsOfJob(client, 'job-1')).toEqual([]);
    // A server that cannot answer is not one that found no run.
    await expect(runningRunsOfJob(client, 'job-down')).rejects.toThrow(
      /^cannot tell whether job-down still runs: 14 UNAVAILABLE/,
    );
  });
});

describe('muse up', () => {
  it('refuses one port for both servers, naming both flags, before starting either', async () => {
    await expect(muse('up', '--temporal-port', '17299', '--nats-port', '17299')).rejects.toThrow(
      'Temporal and NATS would both listen on port 17299 (--temporal-port 17299, --nats-port 17299): give each its own port',
    );
    await expect(muse('up', '--nats-port', '7233')).rejects.toThrow(
      "Temporal and NATS would both listen on port 7233 (--temporal-port's default, --nats-port 7233)",
    );
    expect(readdirSync(dir).filter((f) => f !== 'logs')).toEqual([]);
  });

  it('says when the configuration names other servers than the stack it runs, which later commands would use', () => {
    const stack = { temporalAddress: '127.0.0.1:7233', natsUrl: 'nats://127.0.0.1:4222' };
    const cfg = loadConfig({ env: { MUSE_TEMPORAL_ADDRESS: '127.0.0.1:17233' } });
    expect(elsewhere({ ...cfg, nats: { ...cfg.nats, url: stack.natsUrl } }, stack)).toEqual([
      'the configuration (config file or MUSE_TEMPORAL_ADDRESS) names Temporal at 127.0.0.1:17233, not 127.0.0.1:7233 ' +
        'where this stack runs; later commands connect to 127.0.0.1:17233',
    ]);
    // Nothing configured: the stack's addresses, its defaults, are what later commands take.
    const defaults = { temporal: { address: stack.temporalAddress }, nats: { url: stack.natsUrl } };
    expect(elsewhere(loadConfig({ env: {}, defaults }), stack)).toEqual([]);
    expect(
      elsewhere(loadConfig({ env: { MUSE_NATS_URL: 'nats://10.0.0.5:4222' }, defaults }), stack),
    ).toEqual([
      expect.stringMatching(
        /^the configuration \(config file or MUSE_NATS_URL\) names NATS at nats:\/\/10\.0\.0\.5:4222, not/,
      ),
    ]);
  });
});

describe('muse pool serve', () => {
  it('names the missing flags of --backend openai instead of printing zod issues', async () => {
    const err = await serve('--backend openai').catch((e: Error) => e);
    expect((err as Error).message).toBe(
      'pool serve --backend openai: --base-url is required; --model is required',
    );
    await expect(serve('--backend openai --base-url nope --model m')).rejects.toThrow(
      /^pool serve --backend openai: --base-url: Invalid URL/,
    );
  });

  it('refuses an option the chosen backend would not use, naming it, instead of dropping it', async () => {
    await expect(
      serve('--backend sim --base-url http://gpu:8000/v1 --api-key k --seed-param none'),
    ).rejects.toThrow(
      /^pool serve --backend sim: --base-url, --api-key, --seed-param do not apply to this backend$/,
    );
    await expect(serve('--backend sglang --base-url http://h:30000 --mode completions')).rejects.toThrow(
      /^pool serve --backend sglang: --mode does not apply to this backend$/,
    );
    await expect(serve('--backend openai --base-url http://h/v1 --model m --time-scale 2')).rejects.toThrow(
      /--time-scale does not apply/,
    );
    // The context length is the real server's own setting; only the simulator takes it here.
    await expect(serve('--backend sglang --base-url http://h:30000 --max-model-len 8192')).rejects.toThrow(
      /^pool serve --backend sglang: --max-model-len does not apply to this backend$/,
    );
    await expect(serve('--backend sim --max-model-len 0')).rejects.toThrow(
      /--max-model-len must be a positive integer, got '0'/,
    );
    // Defaults (--mode chat, --time-scale 0) are not the user's doing: they pass.
    await expect(serve('--backend sim --max-batch 0')).rejects.toThrow(
      /--max-batch must be a positive integer, got '0'/,
    );
    await expect(
      serve('--backend sglang --base-url http://h:30000 --chat-template', join(dir, 'none.json')),
    ).rejects.toThrow(/^--chat-template: cannot read .*none\.json: ENOENT/);
  });

  it('takes health-check settings for a real server only, and refuses a check with no time to answer', async () => {
    await expect(serve('--backend sim --health-interval 1')).rejects.toThrow(
      /^pool serve --backend sim: --health-interval does not apply to this backend$/,
    );
    await expect(
      serve('--backend openai --base-url http://h/v1 --model m --health-timeout 0'),
    ).rejects.toThrow(/--health-timeout must be a number of seconds above 0, got '0'/);
    await expect(serve('--backend sglang --base-url http://h:30000 --health-interval -1')).rejects.toThrow(
      /--health-interval must be a number of seconds of at least 0, got '-1'/,
    );
  });

  it('takes a drain timeout for any backend, within the hour routers are told of', async () => {
    await expect(serve('--backend sim --drain-timeout 3601')).rejects.toThrow(
      /--drain-timeout must be at most 3600 seconds, got '3601'/,
    );
    await expect(serve('--backend sim --drain-timeout -1')).rejects.toThrow(
      /--drain-timeout must be a number of seconds of at least 0, got '-1'/,
    );
    await expect(serve('--backend sglang --logprobs sometimes --base-url http://h:30000')).rejects.toThrow(
      /^pool serve --backend sglang: --logprobs: /,
    );
    await expect(serve('--backend sim --logprobs raw')).rejects.toThrow(
      /^pool serve --backend sim: --logprobs does not apply to this backend$/,
    );
  });

  it('createBackend names the fields too (callers other than the CLI)', () => {
    expect(() => createBackend({ backend: 'openai' } as never)).toThrow(
      /^invalid backend spec: baseUrl: .*; model: /,
    );
  });

  it('refuses a chat template whose message has no {content}: every message would be dropped', () => {
    for (const message of ['<|{role}|>\n{ content }\n', '[{role}] {Content}\n'])
      expect(() =>
        createBackend({
          backend: 'sglang',
          baseUrl: 'http://h:30000',
          chatTemplate: { message, generationPrompt: '<|assistant|>\n' },
        }),
      ).toThrow(/chatTemplate\.message must contain \{content\}/);
  });

  it('refuses a backend option it does not know, or one that does not apply, naming it', async () => {
    expect(() =>
      createBackend({ backend: 'sglang', baseUrl: 'http://h:30000', inputIdz: true } as never),
    ).toThrow(/^invalid backend spec: .*Unrecognized key: "inputIdz"/);
    await expect(serve('--backend openai --base-url http://h:8000/v1 --model m --token-ids')).rejects.toThrow(
      /^pool serve --backend openai: --mode: promptTokenIds and chatTemplate apply to mode completions/,
    );
    await expect(
      serve('--backend sglang --base-url http://h:30000 --extra-body', '{top_p: 1}'),
    ).rejects.toThrow(/^--extra-body is not valid JSON/);
  });

  it('builds the configured backend: cache size announced, token ids and template passed through', async () => {
    const openai = createBackend({
      backend: 'openai',
      baseUrl: 'http://h:8000/v1',
      model: 'm',
      mode: 'completions',
      promptTokenIds: true,
      chatTemplate: { message: '[{role}] {content}\n', generationPrompt: '[assistant] ' },
      cacheCapacityTokens: 393_216,
      maxBatch: 128,
    });
    expect(openai.load?.()).toMatchObject({ maxBatch: 128, cacheCapacityTokens: 393_216 });
    const sglang = createBackend({
      backend: 'sglang',
      baseUrl: 'http://h:30000',
      seedParam: null,
      inputIds: true,
    });
    expect(sglang.kind).toBe('sglang');
  });
});

describe('progress bar on a terminal', () => {
  const wasTty = process.stderr.isTTY;
  const written: string[] = [];
  let exit: ReturnType<typeof vi.spyOn>;
  beforeEach(() => {
    written.length = 0;
    vi.spyOn(process.stderr, 'write').mockImplementation(
      (chunk: string | Uint8Array) => written.push(String(chunk)) > 0,
    );
    exit = vi.spyOn(process, 'exit').mockImplementation((() => undefined) as never);
  });
  afterEach(() => {
    process.stderr.isTTY = wasTty;
    vi.restoreAllMocks();
  });

  it('leaves the exit on Ctrl-C to a handler set before it (the demo stopping its servers), even once that has fired', () => {
    let demoHandled = 0;
    process.stderr.isTTY = true;
    process.once('SIGINT', () => demoHandled++);
    const bar = progressBar(10);
    const detach = noticeOnInterrupt('the trajectory', 'traj-1');
    // `once` takes the demo's handler off before calling it: that must not read as nobody listening.
    process.emit('SIGINT', 'SIGINT');
    expect(demoHandled).toBe(1);
    expect(exit).not.toHaveBeenCalled();
    bar.stop();
    detach();
    // Alone (muse run), it exits as the signal would have.
    const alone = progressBar(10);
    const aloneDetach = noticeOnInterrupt('the trajectory', 'traj-2');
    process.emit('SIGINT', 'SIGINT');
    expect(exit).toHaveBeenCalledWith(130);
    alone.stop();
    aloneDetach();
  });

  it('on Ctrl-C, with a bar or without one (a log, --json), says the run goes on and names it, once', () => {
    for (const tty of [true, false]) {
      process.stderr.isTTY = tty;
      written.length = 0;
      exit.mockClear();
      const bar = progressBar(10);
      const detach = noticeOnInterrupt('the trajectory', 'traj-42');
      process.emit('SIGINT', 'SIGINT');
      expect(exit.mock.calls).toEqual([[130]]);
      expect(written.filter((w) => w.includes('interrupted'))).toEqual([
        '\nmuse: interrupted; the trajectory traj-42 goes on (muse status traj-42 shows where it is)\n',
      ]);
      bar.stop();
      detach();
    }
    expect(process.listenerCount('SIGINT')).toBe(0);
  });

  it('writes a step whose action holds newlines or terminal escapes as one plain line', () => {
    expect(oneLine('answer: line one\nline two \x1b[31mRED\x1b[0m')).toBe(
      'answer: line one line two  [31mRED [0m',
    );
  });
});

describe('muse status', () => {
  it('shows an ended trajectory’s prediction and termination', () => {
    const r = statusResult(
      'trajectory',
      {
        trajectoryId: 't1',
        prediction: 'Paris',
        termination: 'answer',
        steps: 3,
        usage: {},
        runs: 1,
      },
      't1',
    );
    expect(r).toMatchObject({ id: 't1', prediction: 'Paris', termination: 'answer', steps: 3 });
    // Recorded before results named their model: no models field, rather than an empty list that reads as none.
    expect(r).not.toHaveProperty('models');
  });

  it('says what generated a result, and tells one recorded before that was kept from one without model calls', () => {
    expect(modelsLine(['muse-sim (simulator, not a language model)'], 3)).toBe(
      'muse-sim (simulator, not a language model)',
    );
    expect(modelsLine(undefined, 3)).toBe('(not recorded)');
    expect(modelsLine([], 0)).toBe('(no model call)');
  });

  it('shows an ended ParallelMuse question’s prediction and its rollouts’ terminations', () => {
    const r = statusResult(
      'parallelMuse',
      {
        prediction: 'Paris',
        aggregator: 'compressed',
        answer: 'Paris',
        correct: true,
        rollouts: [
          { rolloutId: 'initial-0', termination: 'answer' },
          { rolloutId: 'initial-1', termination: 'answer' },
          { rolloutId: 'initial-0-s3-b0', termination: 'max_turns' },
        ],
        plan: { n: 3, initial: 3, partial: 0, scratch: 0, rounds: 0 },
      },
      'pm-1',
    );
    expect(r).toMatchObject({
      prediction: 'Paris',
      correct: true,
      rollouts: 3,
      // Their own workflow ids, which muse export takes, as its error for a question's id says.
      rolloutIds: ['pm-1/initial-0', 'pm-1/initial-1', 'pm-1/initial-0-s3-b0'],
      terminations: { answer: 2, max_turns: 1 },
    });
  });
});

describe('failure messages', () => {
  it('name the cause Temporal keeps behind "Workflow execution failed", and the id a start found taken', () => {
    const failed = new WorkflowFailedError(
      'Workflow execution failed',
      ApplicationFailure.nonRetryable('every rollout of the question failed (2)', 'RolloutsFailed'),
      RetryState.NON_RETRYABLE_FAILURE,
    );
    expect(failureMessage(failed)).toBe(
      'Workflow execution failed: every rollout of the question failed (2)',
    );
    const taken = new WorkflowExecutionAlreadyStartedError(
      'Workflow execution already started',
      'q-1',
      'trajectory',
    );
    expect(failureMessage(taken)).toMatch(/'q-1' is already running or kept: see `muse status q-1`/);
    expect(failureMessage(new Error('plain'))).toBe('plain');
  });
});

describe('writeJsonLines (muse export)', () => {
  /** A sink that fails its `failAt`th write with `code`, as a full disk or a closed pipe would. */
  const failingSink = (failAt: number, code: string) => {
    const written: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        if (written.length + 1 === failAt) {
          done(Object.assign(new Error(`${code}: write failed`), { code }));
          return;
        }
        written.push(chunk.toString());
        done();
      },
    });
    return { sink, written };
  };
  async function* steps(n: number) {
    for (let i = 0; i < n; i++) {
      // Each step is read from the store between writes: a failed write's error arrives meanwhile.
      await new Promise((r) => setTimeout(r, 5));
      yield { step: i };
    }
  }

  it('fails naming the file when a write fails (a full disk), instead of an unheard error event', async () => {
    const { sink, written } = failingSink(3, 'ENOSPC');
    await expect(writeJsonLines(steps(10), sink, 'out.jsonl')).rejects.toThrow(
      /^cannot write out\.jsonl: ENOSPC: write failed$/,
    );
    expect(written).toEqual(['{"step":0}\n', '{"step":1}\n']);
  });

  it('ends quietly when the reader goes away (EPIPE), having written what it could', async () => {
    const { sink } = failingSink(2, 'EPIPE');
    await expect(writeJsonLines(steps(10), sink, 'standard output')).resolves.toBe(1);
  });

  it('writes every item as a line and counts them', async () => {
    const { sink, written } = failingSink(0, 'EIO');
    await expect(writeJsonLines(steps(3), sink, 'out.jsonl')).resolves.toBe(3);
    expect(written.join('')).toBe('{"step":0}\n{"step":1}\n{"step":2}\n');
  });
});

describe('long-running processes', () => {
  it('say when their NATS connection is lost and when it is back, once each, not at every reconnect attempt', async () => {
    const events = [
      'disconnect',
      'reconnecting',
      'reconnecting',
      'reconnect',
      'update',
      'disconnect',
      'reconnect',
    ];
    const nc = {
      status: async function* () {
        for (const type of events) {
          await new Promise((r) => setTimeout(r, 5));
          yield { type };
        }
      },
    };
    const said: string[] = [];
    const spy = vi.spyOn(console, 'error').mockImplementation((m: string) => {
      said.push(m);
    });
    onTestFinished(() => spy.mockRestore());
    tellNatsConnection(nc as never, 'nats://n:4222', 'model calls wait for it');
    await new Promise((r) => setTimeout(r, 100));
    expect(said).toHaveLength(4);
    expect(said[0]).toBe('NATS connection to nats://n:4222 lost; reconnecting (model calls wait for it)');
    expect(said[1]).toMatch(/^NATS connection to nats:\/\/n:4222 back after \d+\.\d s$/);
    expect(said[2]).toBe(said[0]);
  });
});

describe('following a run', () => {
  /**
   * Follows a run whose progress queries all time out (no worker answers them) for `ms`, on `client`, then ends it;
   * returns what the follower said and the result.
   */
  async function unansweredFollow(
    client: object,
    opts: { told?: { noWorker: boolean; failing: boolean }; ms?: number } = {},
  ) {
    let finish!: (r: unknown) => void;
    const handle = {
      result: () => new Promise((ok) => (finish = ok)),
      query: () => Promise.reject(Object.assign(new Error('deadline exceeded'), { code: 4 })),
      client,
    };
    const heard: string[] = [];
    const following = followTrajectory(handle as never, () => {}, {
      intervalMs: 1,
      unansweredMs: 5,
      onUnanswered: (why) => heard.push(why),
      ...(opts.told ? { told: opts.told } : {}),
    });
    await new Promise((r) => setTimeout(r, opts.ms ?? 100));
    finish({ termination: 'answer' });
    return { heard, result: await following };
  }

  it('says once, when no worker answers, why there is no progress, and still returns the result', async () => {
    const { heard, result } = await unansweredFollow(abortableCalls());
    expect(result).toEqual({ termination: 'answer' });
    expect(heard).toEqual([
      'no worker answered within 0.005 s: is a rollout worker running on its task queue?',
    ]);
  });

  it('tells once across follows that share what was told (muse run following its run again after an outage)', async () => {
    const told = { noWorker: false, failing: false };
    const first = await unansweredFollow(abortableCalls(), { told, ms: 50 });
    const second = await unansweredFollow(abortableCalls(), { told, ms: 50 });
    expect(first.heard).toHaveLength(1);
    expect(second.heard).toEqual([]);
  });

  it('blames the server, not the workers, when the server does not answer either (a restart)', async () => {
    const unavailable = Object.assign(new Error('14 UNAVAILABLE: No connection established'), { code: 14 });
    const { heard } = await unansweredFollow({
      ...abortableCalls(),
      workflowService: { getSystemInfo: () => Promise.reject(unavailable) },
    });
    expect(heard[0]).toBe('the Temporal server does not answer (14 UNAVAILABLE: No connection established)');
    expect(heard.some((h) => h.includes('no worker'))).toBe(false);
  });

  it('returns the result once the query in flight has ended (cancelled), so the caller may close the connection', async () => {
    let finish!: (r: unknown) => void;
    const calls = abortableCalls();
    const handle = {
      result: () => new Promise((ok) => (finish = ok)),
      // A query no worker answers: it ends only when cancelled.
      query: () => new Promise(() => {}),
      client: calls,
    };
    const following = followTrajectory(handle as never, () => {}, { intervalMs: 1 });
    await new Promise((r) => setTimeout(r, 20));
    expect(calls.inFlight()).toBe(1);
    finish({ termination: 'answer' });
    expect(await following).toEqual({ termination: 'answer' });
    expect(calls.inFlight()).toBe(0);
  });

  it('leaves no abort listener behind per progress query (the client never removes its own)', async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.name);
    process.on('warning', onWarning);
    try {
      let finish!: (r: unknown) => void;
      let queries = 0;
      const handle = {
        result: () => new Promise((ok) => (finish = ok)),
        query: async () => {
          queries++;
          return { status: 'running', step: queries };
        },
        client: abortableCalls(),
      };
      const following = followTrajectory(handle as never, () => {}, { intervalMs: 1 });
      await expect.poll(() => queries, { timeout: 5_000 }).toBeGreaterThan(30);
      finish({ termination: 'answer' });
      expect(await following).toEqual({ termination: 'answer' });
      await new Promise((r) => setImmediate(r));
      expect(warnings).not.toContain('MaxListenersExceededWarning');
    } finally {
      process.off('warning', onWarning);
    }
  });

  it("withCallSignal: a scope listens on the caller's signal only while it runs, and is cancelled by it", async () => {
    const calls = abortableCalls();
    const outer = new AbortController();
    for (let i = 0; i < 20; i++) await withCallSignal(calls, outer.signal, async () => i);
    expect(getEventListeners(outer.signal, 'abort')).toHaveLength(0);
    const hanging = withCallSignal(calls, outer.signal, () => new Promise(() => {}));
    expect(getEventListeners(outer.signal, 'abort')).toHaveLength(1);
    outer.abort();
    await expect(hanging).rejects.toThrow('cancelled');
    expect(calls.inFlight()).toBe(0);
  });

  it('says why when queries keep failing at once, and asks less often while they do', async () => {
    let finish!: (r: unknown) => void;
    let queries = 0;
    const handle = {
      result: () => new Promise((ok) => (finish = ok)),
      // A workflow task failing after a deploy: the query fails at once, not for want of a worker.
      query: () => {
        queries++;
        return Promise.reject(new Error('workflow task failed: nondeterminism'));
      },
      client: abortableCalls(),
    };
    const heard: string[] = [];
    const following = followTrajectory(handle as never, () => {}, {
      intervalMs: 20,
      onUnanswered: (why) => heard.push(why),
    });
    await new Promise((r) => setTimeout(r, 2_000));
    finish({ termination: 'answer' });
    expect(await following).toEqual({ termination: 'answer' });
    // Said after five failures in a row (at about 0.6 s here), once.
    expect(heard).toEqual(['no progress to show (workflow task failed: nondeterminism)']);
    // Every 20 ms, it would have asked about 100 times in those 2 s; backing off, a handful.
    expect(queries).toBeGreaterThanOrEqual(5);
    expect(queries).toBeLessThanOrEqual(9);
  });
});
