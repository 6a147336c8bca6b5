// Benchmarks start their own Temporal dev server and nats-server on free loopback ports, in a temp dir.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig, type MuseConfig } from '../common/config.js';
import { freePort, startNats, startTemporal } from '../infra/services.js';

export async function benchStack(
  name: string,
  overrides: Record<string, unknown> = {},
): Promise<{ cfg: MuseConfig; stop(): Promise<void> }> {
  const dataDir = mkdtempSync(join(tmpdir(), `muse-bench-${name}-`));
  const [tp, np] = [await freePort(), await freePort()];
  const [temporal, nats] = await Promise.all([
    startTemporal({ dataDir, port: tp }),
    startNats({ dataDir, port: np }),
  ]);
  const cfg = loadConfig({
    env: {},
    overrides: {
      dataDir: join(dataDir, 'state'),
      temporal: { address: temporal.address, taskQueue: `bench-${name}` },
      nats: { url: nats.url },
      ...overrides,
    },
  });
  return {
    cfg,
    async stop() {
      await Promise.all([temporal.stop(), nats.stop()]);
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export function table(rows: Record<string, string | number>[]): string {
  const cols = Object.keys(rows[0] ?? {});
  const cell = (v: string | number) =>
    typeof v === 'number' ? (Number.isInteger(v) ? String(v) : v.toFixed(3)) : v;
  const widths = cols.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c] ?? '').length)));
  const line = (vals: string[]) => `| ${vals.map((v, i) => v.padEnd(widths[i]!)).join(' | ')} |`;
  return [
    line(cols),
    line(widths.map((w) => '-'.repeat(w))),
    ...rows.map((r) => line(cols.map((c) => cell(r[c] ?? '')))),
  ].join('\n');
}
