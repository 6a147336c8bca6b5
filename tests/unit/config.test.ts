// Configuration from a file and MUSE_* variables: a wrong setting is refused, naming where it came from.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../common/config.js';
import { temporalConnectionOptions } from '../../common/temporal.js';
import { tempDir } from '../helpers/temp.js';

function configFile(content: unknown): string {
  const file = join(tempDir('muse-config-'), 'muse.json');
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

  it('refuses an empty setting in a file instead of reading it as unset (a template variable that expanded to nothing)', () => {
    expect(() => loadConfig({ file: configFile({ nats: { url: '' } }), env: {} })).toThrow(
      /nats\.url: must not be empty/,
    );
    const halfTls = configFile({ temporal: { tlsCertPath: '', tlsKeyPath: '' } });
    expect(() => loadConfig({ file: halfTls, env: {} })).toThrow(/temporal\.tlsCertPath: must not be empty/);
    expect(() => loadConfig({ file: configFile({ temporal: { apiKey: '' } }), env: {} })).toThrow(
      /temporal\.apiKey: must not be empty/,
    );
    expect(() => loadConfig({ file: configFile({ dataDir: '' }), env: {} })).toThrow(
      /dataDir: must not be empty/,
    );
    // An empty variable is unset, as before.
    expect(loadConfig({ env: { MUSE_NATS_URL: '' } }).nats.url).toBe('nats://127.0.0.1:4222');
  });

  it("refuses a file's __proto__ key instead of merging it into every object of the process", () => {
    const file = configFile({});
    writeFileSync(file, '{"router": {"__proto__": {"polluted": "yes"}}}');
    expect(() => loadConfig({ file, env: {} })).toThrow(/'__proto__' is not a setting/);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('reads text variables as text, even when they look like numbers', () => {
    expect(loadConfig({ env: { MUSE_TASK_QUEUE: '123' } }).temporal.taskQueue).toBe('123');
    expect(loadConfig({ env: { MUSE_STORE_TTL_MS: '0' } }).store.ttlMs).toBe(0);
  });

  it('keeps one copy of content unless MUSE_STORE_REPLICAS asks for a cluster of up to 5', () => {
    expect(loadConfig({ env: {} }).store.replicas).toBe(1);
    expect(loadConfig({ env: { MUSE_STORE_REPLICAS: '3' } }).store.replicas).toBe(3);
    expect(() => loadConfig({ env: { MUSE_STORE_REPLICAS: '0' } })).toThrow(/store\.replicas/);
    expect(() => loadConfig({ env: { MUSE_STORE_REPLICAS: '7' } })).toThrow(/store\.replicas/);
  });

  it('takes only store TTLs JetStream takes: 0, or 100 ms up to its largest age', () => {
    for (const v of ['50', '9223372036855'])
      expect(() => loadConfig({ env: { MUSE_STORE_TTL_MS: v } })).toThrow(
        /store\.ttlMs: must be 0 .* or from 100 to 9223372036854 ms.*\(set by MUSE_STORE_TTL_MS\)/,
      );
    expect(loadConfig({ env: { MUSE_STORE_TTL_MS: '100' } }).store.ttlMs).toBe(100);
    expect(loadConfig({ env: { MUSE_STORE_TTL_MS: '9223372036854' } }).store.ttlMs).toBe(9_223_372_036_854);
  });

  it('refuses an inline request limit above the request size limit', () => {
    const file = configFile({ router: { inlineRequestBytes: 4_000_000, maxRequestBytes: 1_000_000 } });
    expect(() => loadConfig({ file, env: {} })).toThrow(
      /router\.inlineRequestBytes: inlineRequestBytes must not exceed maxRequestBytes/,
    );
    // Only a value that was set: a lower request cap brings the default inline limit down with it.
    const capped = loadConfig({ file: configFile({ router: { maxRequestBytes: 262_144 } }), env: {} });
    expect(capped.router).toMatchObject({ maxRequestBytes: 262_144, inlineRequestBytes: 262_144 });
    expect(loadConfig({ env: {} }).router.inlineRequestBytes).toBe(512 * 1024);
  });

  it('takes a router lease of 0 (none) or from 1 s to 1 h, 10 s unless set', () => {
    expect(loadConfig({ env: {} }).router.leaseMs).toBe(10_000);
    expect(loadConfig({ file: configFile({ router: { leaseMs: 0 } }), env: {} }).router.leaseMs).toBe(0);
    for (const leaseMs of [500, 4 * 3_600_000])
      expect(() => loadConfig({ file: configFile({ router: { leaseMs } }), env: {} })).toThrow(
        /router\.leaseMs: must be 0 \(no lease\) or from 1000 to 3600000 ms/,
      );
  });

  it('names the variable behind a bad value', () => {
    expect(() => loadConfig({ env: { MUSE_STORE_TTL_MS: 'a week' } })).toThrow(
      "MUSE_STORE_TTL_MS must be a number, got 'a week'",
    );
    // Not read as numbers by JavaScript's looser rules: a blank as 0 (keep forever), hex, exponents.
    for (const v of [' ', '0x10', '1e3'])
      expect(() => loadConfig({ env: { MUSE_STORE_TTL_MS: v } })).toThrow(
        `MUSE_STORE_TTL_MS must be a number, got '${v}'`,
      );
    expect(loadConfig({ env: { MUSE_STORE_TTL_MS: ' 3600000 ' } }).store.ttlMs).toBe(3_600_000);
    expect(() => loadConfig({ env: { MUSE_STORE_TTL_MS: '-1' } })).toThrow(
      /store\.ttlMs: .*\(set by MUSE_STORE_TTL_MS\)/,
    );
    expect(() => loadConfig({ env: { MUSE_ROUTING_POLICY: 'fastest' } })).toThrow(
      /router\.policy: .*\(set by MUSE_ROUTING_POLICY\)/,
    );
  });

  it('refuses a member TTL that would drop members between their announcements, or one no timer can keep', () => {
    expect(() => loadConfig({ env: { MUSE_MEMBER_TTL_MS: '1000' } })).toThrow(
      /router\.memberTtlMs: must be at least 1500 ms: members announce themselves every 1000 ms \(set by MUSE_MEMBER_TTL_MS\)/,
    );
    expect(() => loadConfig({ env: { MUSE_MEMBER_TTL_MS: '9000000000' } })).toThrow(/at most 3600000 ms/);
    expect(loadConfig({ env: { MUSE_MEMBER_TTL_MS: '1500' } }).router.memberTtlMs).toBe(1500);
  });
});

describe('Temporal connection security', () => {
  const pem = (name: string, text: string) => {
    const file = join(tempDir('muse-tls-'), name);
    writeFileSync(file, text);
    return file;
  };

  it('is plaintext by default, and TLS with the system roots when asked or when an API key is set', () => {
    expect(temporalConnectionOptions(loadConfig({ env: {} }))).toEqual({ address: '127.0.0.1:7233' });
    expect(temporalConnectionOptions(loadConfig({ env: { MUSE_TEMPORAL_TLS: 'true' } })).tls).toEqual({});
    const cloud = temporalConnectionOptions(
      loadConfig({
        env: { MUSE_TEMPORAL_ADDRESS: 'ns.acct.tmprl.cloud:7233', MUSE_TEMPORAL_API_KEY: 'k-123' },
      }),
    );
    expect(cloud).toEqual({ address: 'ns.acct.tmprl.cloud:7233', tls: {}, apiKey: 'k-123' });
  });

  it('reads the client certificate, key and CA files for mTLS', () => {
    const env = {
      MUSE_TEMPORAL_TLS_CERT: pem('client.pem', 'CERT'),
      MUSE_TEMPORAL_TLS_KEY: pem('client.key', 'KEY'),
      MUSE_TEMPORAL_TLS_CA: pem('ca.pem', 'CA'),
      MUSE_TEMPORAL_TLS_SERVER_NAME: 'temporal.internal',
    };
    const { tls } = temporalConnectionOptions(loadConfig({ env }));
    expect(Buffer.from(tls!.clientCertPair!.crt).toString()).toBe('CERT');
    expect(Buffer.from(tls!.clientCertPair!.key).toString()).toBe('KEY');
    expect(Buffer.from(tls!.serverRootCACertificate!).toString()).toBe('CA');
    expect(tls!.serverNameOverride).toBe('temporal.internal');
  });

  it('refuses a certificate without its key, a flag that is not one, and a file that cannot be read', () => {
    expect(() => loadConfig({ env: { MUSE_TEMPORAL_TLS_CERT: '/etc/client.pem' } })).toThrow(
      /temporal\.tlsCertPath: tlsCertPath and tlsKeyPath go together .*only the certificate is set \(set by MUSE_TEMPORAL_TLS_CERT\)/,
    );
    expect(() => loadConfig({ env: { MUSE_TEMPORAL_TLS_KEY: '/etc/client.key' } })).toThrow(
      /temporal\.tlsKeyPath: .*only the key is set \(set by MUSE_TEMPORAL_TLS_KEY\)/,
    );
    expect(() => loadConfig({ env: { MUSE_TEMPORAL_TLS: 'yes' } })).toThrow(
      "MUSE_TEMPORAL_TLS must be true or false (or 1 or 0), got 'yes'",
    );
    expect(loadConfig({ env: { MUSE_TEMPORAL_TLS: '0' } }).temporal.tls).toBe(false);
    const cfg = loadConfig({ env: { MUSE_TEMPORAL_TLS_CA: '/nonexistent/ca.pem' } });
    expect(() => temporalConnectionOptions(cfg)).toThrow(
      /^temporal\.tlsCaPath: cannot read \/nonexistent\/ca\.pem: ENOENT/,
    );
  });
});
