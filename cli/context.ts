// What every command needs: the configuration, with the local stack's addresses when `muse up` started it and
// nothing else names the servers.
import { statSync } from 'node:fs';
import { ConfigError, loadConfig, type MuseConfig } from '../common/config.js';
import { readStackFile } from '../infra/services.js';

export function cliConfig(opts: { config?: string; dataDir?: string }): MuseConfig {
  const load = (defaults?: unknown) =>
    loadConfig({
      file: opts.config,
      defaults,
      overrides: opts.dataDir ? { dataDir: opts.dataDir } : undefined,
    });
  const cfg = load();
  // Checked here, where it can be named: a file there (or on the way there) failed later, as a bare ENOTDIR from
  // whatever touched it first.
  const notADirectory = (why: string) =>
    new ConfigError(
      `the data directory ${cfg.dataDir} (--data-dir, MUSE_DATA_DIR or the config's dataDir) ${why}`,
    );
  let isDirectory: boolean | undefined;
  try {
    // Without throwIfNoEntry, which newer Node versions also apply to ENOTDIR (answering undefined for a path under
    // a file, as for one not there yet).
    isDirectory = statSync(cfg.dataDir).isDirectory();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOTDIR') throw notADirectory('is under a file, not a directory');
    if (code !== 'ENOENT') throw notADirectory(`cannot be read: ${(err as Error).message}`);
  }
  if (isDirectory === false) throw notADirectory('is not a directory');
  const stack = readStackFile(cfg.dataDir);
  if (!stack) return cfg;
  // The running stack's addresses are defaults: a config file or MUSE_* variable naming other servers wins.
  return load({
    ...(stack.temporal ? { temporal: { address: stack.temporal.address } } : {}),
    ...(stack.nats ? { nats: { url: stack.nats.url } } : {}),
  });
}
