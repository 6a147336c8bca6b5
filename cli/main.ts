#!/usr/bin/env node
// The `muse` command. Thin: parses arguments and calls the modules that do the work.
import { failureMessage } from '../client/trajectories.js';
import { buildProgram } from './program.js';

// Output piped into a reader that stops early (`muse export <id> | head`): the rest is not wanted, which is no
// failure. The command goes on to its end (a batch writing its results file, a demo stopping its servers).
// Any other failure to write it (a full disk) is one line, not a stack trace.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') return;
  process.stderr.write(`muse: cannot write to standard output: ${err.message}\n`);
  process.exit(1);
});

buildProgram()
  .parseAsync(process.argv)
  .catch((err: Error) => {
    process.stderr.write(`muse: ${failureMessage(err)}\n`);
    process.exit(1);
  });
