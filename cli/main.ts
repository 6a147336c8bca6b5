#!/usr/bin/env node
// The `muse` command. Thin: parses arguments and calls the modules that do the work.
import { failureMessage } from '../client/trajectories.js';
import { buildProgram } from './program.js';

// Output piped into a reader that stops early (`muse export <id> | head`): the rest is not wanted, which is no
// failure. The command goes on to its end (a batch writing its results file, a demo stopping its servers).
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code !== 'EPIPE') throw err;
});

buildProgram()
  .parseAsync(process.argv)
  .catch((err: Error) => {
    process.stderr.write(`muse: ${failureMessage(err)}\n`);
    process.exit(1);
  });
