// Content commands: export a finished trajectory, delete a job's stored content, simulator questions.

import { once } from 'node:events';
import {
  closeSync,
  createWriteStream,
  openSync,
  readSync,
  renameSync,
  rmSync,
  type WriteStream,
} from 'node:fs';
import type { Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import type { Command } from 'commander';
import { deleteJobContent, exportTrajectory } from '../client/content.js';
import { refuseDirectory } from '../common/config.js';
import { closeNats, connectNats } from '../common/nats.js';
import { exitAsSignal } from '../common/signals.js';
import { connectClient } from '../common/temporal.js';
import { sampleQuestions } from '../sim/world.js';
import { idArg, intArg, positiveIntArg } from './args.js';
import { cliConfig } from './context.js';

/** The most questions `muse sim questions` prints in one go (they are made in memory). */
const MAX_SIM_QUESTIONS = 100_000;

export function registerContentCommands(program: Command): void {
  program
    .command('export')
    .argument('<id>', 'workflow id of a finished trajectory', idArg('<id>'))
    .option('--out <file>', 'JSONL output (default: stdout)', idArg('--out'))
    .option('--force', 'overwrite --out even when it is not an earlier export')
    .description(
      'export a finished trajectory as JSONL, one line per step with turn and observation resolved',
    )
    .action(async (id: string, o: { out?: string; force?: boolean }) => {
      const cfg = cliConfig(program.opts());
      // Written beside --out and renamed over it once complete: a failed export leaves an earlier one intact.
      const partial = o.out ? `${o.out}.partial-${process.pid}` : undefined;
      // Opened before anything else, so a path that cannot be written (no such directory) fails first, by name.
      const out = partial
        ? createWriteStream(partial, { fd: openOut(partial, o.out!, o.force === true) })
        : process.stdout;
      // Ctrl-C ends the process without running `finally`: the partial file is removed here instead.
      const interrupted = (signal: NodeJS.Signals) => {
        if (partial) rmSync(partial, { force: true });
        exitAsSignal(signal);
      };
      process.once('SIGINT', interrupted);
      process.once('SIGTERM', interrupted);
      try {
        const client = await connectClient(cfg);
        const nc = await connectNats(cfg, 'muse-export');
        try {
          const n = await writeJsonLines(exportTrajectory(client, nc, id), out, o.out ?? 'standard output');
          if (partial && o.out) {
            await finished((out as WriteStream).end()).catch((err: Error) => {
              throw new Error(`cannot write ${o.out}: ${err.message}`);
            });
            renameSync(partial, o.out);
            console.error(`exported ${n} steps to ${o.out}`);
          }
        } finally {
          await closeNats(nc);
          await client.connection.close();
        }
      } finally {
        process.off('SIGINT', interrupted);
        process.off('SIGTERM', interrupted);
        if (partial) rmSync(partial, { force: true });
      }
    });

  program
    .command('content')
    .description('stored content of jobs')
    .command('delete')
    .argument('<jobId>', 'job id (a trajectory started alone uses its workflow id)', idArg('<jobId>'))
    .option('--force', 'delete even while runs of the job still go on (they fail at their next step)')
    .description(
      "delete a job's stored turns, observations, contexts and reports (idempotent); refused while runs of it go on",
    )
    .action(async (jobId: string, o: { force?: boolean }) => {
      const cfg = cliConfig(program.opts());
      const nc = await connectNats(cfg, 'muse-content');
      // Asked which runs of the job go on, unless told to delete anyway.
      const client = o.force
        ? undefined
        : await connectClient(cfg).catch(async (err: unknown) => {
            await closeNats(nc);
            throw err;
          });
      try {
        const deleted = await deleteJobContent(nc, jobId, client ? { client } : { force: true });
        console.log(deleted.length ? `deleted ${deleted.join(', ')}` : `no stored content for job ${jobId}`);
      } finally {
        await client?.connection.close();
        await closeNats(nc);
      }
    });

  program
    .command('sim')
    .description('the simulator (synthetic questions with ground truth)')
    .command('questions')
    .option('--n <n>', 'number of questions', positiveIntArg('--n', MAX_SIM_QUESTIONS), 10)
    // The simulator's worlds are seeded with 32 bits: a seed outside them would give another seed's questions.
    .option('--seed <n>', 'seed (0 to 4294967295)', intArg('--seed', { min: 0, max: 0xffff_ffff }), 1)
    .description('print simulator questions as JSONL ({"question","answer"}), for `muse batch`')
    .action((o: { n: number; seed: number }) => {
      const questions = sampleQuestions(o.n, o.seed);
      for (const q of questions) console.log(JSON.stringify(q));
      if (questions.length < o.n)
        process.stderr.write(`muse: only ${questions.length} distinct questions came of seed ${o.seed}\n`);
    });
}

/**
 * Writes each item as a JSON line, at the reader's pace (a slow reader holds the source back, instead of it piling up
 * in memory); returns how many it wrote. A reader that went away (`| head`, EPIPE) ends it quietly: the rest would be
 * read from the store for nobody. A write that fails otherwise (a full disk) fails it, naming `named`: unheard, the
 * stream's 'error' event would end the process with a stack trace and leave the partial file behind.
 */
export async function writeJsonLines(
  items: AsyncIterable<unknown>,
  out: Writable,
  named: string,
): Promise<number> {
  let failed: NodeJS.ErrnoException | undefined;
  out.on('error', (err: NodeJS.ErrnoException) => {
    failed ??= err;
  });
  let n = 0;
  for await (const item of items) {
    if (failed || !out.writable) break;
    if (!out.write(`${JSON.stringify(item)}\n`)) await once(out, 'drain').catch(() => {});
    if (failed) break;
    n++;
  }
  if (failed && failed.code !== 'EPIPE') throw new Error(`cannot write ${named}: ${failed.message}`);
  return n;
}

/** Whether `path` is missing, empty, or an earlier export: its first line an exported step. */
function replaceableByExport(path: string): boolean {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return true;
    throw new Error(`--out: cannot read ${path}: ${(err as Error).message}`);
  }
  try {
    // The first line only, read until its end: a step's turn and observation make it up to a few MB.
    const chunks: Buffer[] = [];
    let read = 0;
    for (;;) {
      const chunk = Buffer.alloc(64 * 1024);
      const n = readSync(fd, chunk, 0, chunk.length, read);
      const end = chunk.subarray(0, n).indexOf(10);
      chunks.push(chunk.subarray(0, end < 0 ? n : end));
      read += n;
      if (n === 0 || end >= 0 || read >= MAX_EXPORT_LINE_BYTES) break;
    }
    if (read === 0) return true;
    try {
      const step = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
      return typeof step.step === 'number' && typeof step.kind === 'string' && typeof step.turn === 'string';
    } catch {
      return false;
    }
  } finally {
    closeSync(fd);
  }
}
const MAX_EXPORT_LINE_BYTES = 64 * 1024 * 1024;

function openOut(path: string, named: string, force: boolean): number {
  // Checked first: a directory would fail only at the rename, after the whole export.
  refuseDirectory('--out', named);
  // An earlier export is replaced; any other file (a batch's questions or results, say) only when asked to.
  if (!force && !replaceableByExport(named))
    throw new Error(
      `--out: ${named} exists and is not an export (its first line is not an exported step); pass --force to overwrite it, or another path`,
    );
  try {
    return openSync(path, 'w');
  } catch (err) {
    throw new Error(`--out: cannot write ${named}: ${(err as Error).message}`);
  }
}
