// What every command needs: the configuration, with the local stack's addresses when `muse up` started it.
import { loadConfig, type MuseConfig } from '../common/config.js';
import { readStackFile } from '../infra/services.js';

export function cliConfig(opts: { config?: string; dataDir?: string }): MuseConfig {
  const cfg = loadConfig({
    file: opts.config,
    overrides: opts.dataDir ? { dataDir: opts.dataDir } : undefined,
  });
  const stack = readStackFile(cfg.dataDir);
  if (stack?.temporal && !process.env.MUSE_TEMPORAL_ADDRESS) cfg.temporal.address = stack.temporal.address;
  if (stack?.nats && !process.env.MUSE_NATS_URL) cfg.nats.url = stack.nats.url;
  return cfg;
}
