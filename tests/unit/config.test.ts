// Configuration from a file and MUSE_* variables: a wrong setting is refused, naming where it came from.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../common/config.js';

function configFile(content: unknown): string {
  const file = join(mkdtempSync(join(tmpdir(), 'muse-config-')), 'muse.json');
  writeFileSync(file, JSON.stringify(content));
  return file;
}

describe('loadConfig', () => {
  it('refuses a misspelled key instead of falling back to the default server', () => {
    const file = configFile({ temporal: { adress: '10.0.0.5:7233' } });
    expect(() => loadConfig({ file, env: {} })).toThrow(ConfigError);
    expect(() => loadConfig({ file, env: {} })).toThrow(/temporal: Unrecognized key: "adress"/);
    expect(() => loadConfig({ file: configFile({ telemetery: {} }), env: {} })).toThrow(/"telemetery"/);
  });

  it('reads text variables as text, even when they look like numbers', () => {
    expect(loadConfig({ env: { MUSE_TASK_QUEUE: '123' } }).temporal.taskQueue).toBe('123');
    expect(loadConfig({ env: { MUSE_STORE_TTL_MS: '0' } }).store.ttlMs).toBe(0);
  });

  it('names the variable behind a bad value', () => {
    expect(() => loadConfig({ env: { MUSE_STORE_TTL_MS: 'a week' } })).toThrow(
      "MUSE_STORE_TTL_MS must be a number, got 'a week'",
    );
    expect(() => loadConfig({ env: { MUSE_STORE_TTL_MS: '-1' } })).toThrow(
      /store\.ttlMs: .*\(set by MUSE_STORE_TTL_MS\)/,
    );
    expect(() => loadConfig({ env: { MUSE_ROUTING_POLICY: 'fastest' } })).toThrow(
      /router\.policy: .*\(set by MUSE_ROUTING_POLICY\)/,
    );
  });
});
