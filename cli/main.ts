#!/usr/bin/env node
// The `muse` command. Thin: parses arguments and calls the modules that do the work.
import { Command, Option } from 'commander';
import { failureMessage } from '../client/trajectories.js';
import { registerContentCommands } from './content.js';
import { registerRunCommands } from './run.js';
import { registerServiceCommands } from './services.js';

const program = new Command('muse')
  .description('Durable, distributed parallel rollout engine for deep-research agents (Temporal + NATS)')
  .addOption(new Option('--config <file>', 'JSON config file (also MUSE_CONFIG)'))
  .addOption(new Option('--data-dir <dir>', 'local state directory (also MUSE_DATA_DIR)'))
  .showHelpAfterError();

// Output piped into a reader that stops early (`muse export <id> | head`): the rest is not wanted, which is no
// failure. The command goes on to its end (a batch writing its results file, a demo stopping its servers).
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code !== 'EPIPE') throw err;
});

registerServiceCommands(program);
registerRunCommands(program);
registerContentCommands(program);

program.parseAsync(process.argv).catch((err: Error) => {
  process.stderr.write(`muse: ${failureMessage(err)}\n`);
  process.exit(1);
});
