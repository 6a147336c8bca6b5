import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { cliConfig } from '../../cli/context.js';
import { tempDir } from '../helpers/temp.js';

const saved = { ...process.env };
afterEach(() => {
  process.env = { ...saved };
});

/** A data dir holding a running local stack's file (temporal on 7999, nats on 4999). */
function withStack(): string {
  const dataDir = tempDir('muse-cli-context-');
  mkdirSync(dataDir, { recursive: true });
  const service = (port: number, address: string, url: string) => ({
    pid: 1,
    binary: 'x',
    host: '127.0.0.1',
    port,
    address,
    url,
    logFile: 'x',
    ports: {},
    startedAt: '2026-01-01T00:00:00Z',
  });
  writeFileSync(
    join(dataDir, 'stack.json'),
    JSON.stringify({
      version: 1,
      dataDir,
      temporal: { ...service(7999, '127.0.0.1:7999', ''), namespace: 'default' },
      nats: { ...service(4999, '127.0.0.1:4999', 'nats://127.0.0.1:4999'), maxPayload: 8388608 },
    }),
  );
  return dataDir;
}

describe('cliConfig', () => {
  it("uses the local stack's addresses when nothing else names the servers", () => {
    delete process.env.MUSE_TEMPORAL_ADDRESS;
    delete process.env.MUSE_NATS_URL;
    const cfg = cliConfig({ dataDir: withStack() });
    expect(cfg.temporal.address).toBe('127.0.0.1:7999');
    expect(cfg.nats.url).toBe('nats://127.0.0.1:4999');
  });

  it('lets a config file, then MUSE_* variables, name other servers over the running stack', () => {
    delete process.env.MUSE_TEMPORAL_ADDRESS;
    delete process.env.MUSE_NATS_URL;
    const dataDir = withStack();
    const file = join(dataDir, 'prod.json');
    writeFileSync(file, JSON.stringify({ temporal: { address: 'temporal.prod:7233' } }));
    const fromFile = cliConfig({ dataDir, config: file });
    expect(fromFile.temporal.address).toBe('temporal.prod:7233');
    expect(fromFile.nats.url).toBe('nats://127.0.0.1:4999');
    process.env.MUSE_TEMPORAL_ADDRESS = 'temporal.env:7233';
    expect(cliConfig({ dataDir, config: file }).temporal.address).toBe('temporal.env:7233');
  });
});

describe('paths given to every command', () => {
  it('a config file or data directory of the wrong kind is named as such', () => {
    const dir = tempDir('muse-cli-paths-');
    expect(() => cliConfig({ config: dir })).toThrow(
      new RegExp(`^the config file: cannot read ${dir}: EISDIR`),
    );
    const file = join(dir, 'not-a-dir');
    writeFileSync(file, 'x');
    expect(() => cliConfig({ dataDir: file })).toThrow(
      `the data directory ${file} (--data-dir, MUSE_DATA_DIR or the config's dataDir) is not a directory`,
    );
    expect(() => cliConfig({ dataDir: join(file, 'x') })).toThrow(
      `the data directory ${join(file, 'x')} (--data-dir, MUSE_DATA_DIR or the config's dataDir) is under a file, not a directory`,
    );
    process.env.MUSE_DATA_DIR = file;
    expect(() => cliConfig({})).toThrow(/is not a directory/);
  });
});
