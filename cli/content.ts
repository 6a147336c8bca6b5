// Content commands: export a finished trajectory, delete a job's stored content, simulator questions.
import { createWriteStream } from 'node:fs';
import type { Command } from 'commander';
import { deleteJobContent, exportTrajectory } from '../client/content.js';
import { connectNats } from '../common/nats.js';
import { connectClient } from '../common/temporal.js';
import { sampleQuestions } from '../sim/world.js';
import { intArg } from './args.js';
import { cliConfig } from './context.js';

export function registerContentCommands(program: Command): void {
  program
    .command('export')
    .argument('<id>', 'workflow id of a finished trajectory')
    .option('--out <file>', 'JSONL output (default: stdout)')
    .description(
      'export a finished trajectory as JSONL, one line per step with turn and observation resolved',
    )
    .action(async (id: string, o: { out?: string }) => {
      const cfg = cliConfig(program.opts());
      const client = await connectClient(cfg);
      const nc = await connectNats(cfg, 'muse-export');
      const out = o.out ? createWriteStream(o.out) : process.stdout;
      let n = 0;
      for await (const step of exportTrajectory(client, nc, id)) {
        out.write(`${JSON.stringify(step)}\n`);
        n++;
      }
      if (o.out) {
        await new Promise<void>((r) => (out as ReturnType<typeof createWriteStream>).end(r));
        console.error(`exported ${n} steps to ${o.out}`);
      }
      await nc.drain();
      await client.connection.close();
    });

  program
    .command('content')
    .description('stored content of jobs')
    .command('delete')
    .argument('<jobId>', 'job id (a trajectory started alone uses its workflow id)')
    .description("delete a job's stored turns, observations, contexts and reports (idempotent)")
    .action(async (jobId: string) => {
      const cfg = cliConfig(program.opts());
      const nc = await connectNats(cfg, 'muse-content');
      const deleted = await deleteJobContent(nc, jobId);
      console.log(deleted.length ? `deleted ${deleted.join(', ')}` : `no stored content for job ${jobId}`);
      await nc.drain();
    });

  program
    .command('sim')
    .description('the simulator (synthetic questions with ground truth)')
    .command('questions')
    .option('--n <n>', 'number of questions', intArg('--n'), 10)
    .option('--seed <n>', 'seed', intArg('--seed'), 1)
    .description('print simulator questions as JSONL ({"question","answer"}), for `muse batch`')
    .action((o: { n: number; seed: number }) => {
      for (const q of sampleQuestions(o.n, o.seed)) console.log(JSON.stringify(q));
    });
}
