// The `muse` command's parser: its global options and every command, built without running anything.
import { Command, Option } from 'commander';
import { idArg } from './args.js';
import { registerContentCommands } from './content.js';
import { registerRunCommands } from './run.js';
import { registerServiceCommands } from './services.js';

export function buildProgram(): Command {
  const program = new Command('muse')
    .description('Durable, distributed parallel rollout engine for deep-research agents (Temporal + NATS)')
    .addOption(
      new Option('--config <file>', 'JSON config file (also MUSE_CONFIG)').argParser(idArg('--config')),
    )
    .addOption(
      new Option('--data-dir <dir>', 'local state directory (also MUSE_DATA_DIR)').argParser(
        idArg('--data-dir'),
      ),
    )
    .showHelpAfterError();
  registerServiceCommands(program);
  registerRunCommands(program);
  registerContentCommands(program);
  return program;
}
