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

registerServiceCommands(program);
registerRunCommands(program);
registerContentCommands(program);

program.parseAsync(process.argv).catch((err: Error) => {
  process.stderr.write(`muse: ${failureMessage(err)}\n`);
  process.exit(1);
});
