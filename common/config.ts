// Runtime configuration, lowest precedence first: schema defaults < the caller's defaults (the CLI passes the
// addresses `muse up` recorded) < optional JSON file (--config, else MUSE_CONFIG) < environment variables < the
// caller's overrides (the CLI's --data-dir).
// Validated with zod so a wrong value is reported with its path before anything starts.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { z } from 'zod';
import { formatZodError } from './errors.js';

/**
 * A router's lease on its requests (router.leaseMs): the default, and the bounds members keep a lease within (a
 * shorter one would stop work over a router's brief pause; members take at most 1 h).
 */
export const ROUTER_LEASE_MS = { default: 10_000, min: 1000, max: 3_600_000 };

/** 0 (no lease), or a whole number of ms within ROUTER_LEASE_MS. */
export function routerLeaseAllowed(ms: number): boolean {
  return Number.isInteger(ms) && (ms === 0 || (ms >= ROUTER_LEASE_MS.min && ms <= ROUTER_LEASE_MS.max));
}

/** JetStream's largest max age: an int64 of nanoseconds, in ms. */
const MAX_STORE_TTL_MS = 9_223_372_036_854;

export const RoutingPolicyName = z.enum(['round_robin', 'least_loaded', 'prefix_affinity']);

/**
 * A setting's text. Empty is refused, not read as unset: a templated file whose variable expanded to nothing would
 * otherwise connect to the default NATS server (an empty url), or turn TLS on without the client certificate meant.
 */
const Setting = z.string().min(1, 'must not be empty');

// Strict: a misspelled key (`adress`) is an error, not a silent fall-back to the default server.
export const ConfigSchema = z
  .object({
    dataDir: Setting.default('.muse'),
    temporal: z
      .object({
        address: Setting.default('127.0.0.1:7233'),
        namespace: Setting.default('default'),
        taskQueue: Setting.default('muse-rollouts'),
        /** TLS to the frontend, verified against the system's roots unless tlsCaPath names another CA. */
        tls: z.boolean().default(false),
        /** mTLS: the client certificate and its key (PEM files), both or neither; they turn TLS on. */
        tlsCertPath: Setting.optional(),
        tlsKeyPath: Setting.optional(),
        tlsCaPath: Setting.optional(),
        /** The name the server's certificate is checked against, when it differs from the address's host. */
        tlsServerName: Setting.optional(),
        /** An API key (Temporal Cloud), sent as a bearer token on every call; it turns TLS on. */
        apiKey: Setting.optional(),
      })
      .strict()
      .superRefine((t, ctx) => {
        if ((t.tlsCertPath === undefined) === (t.tlsKeyPath === undefined)) return;
        // Reported at the one that is set, so the error names the variable that set it.
        ctx.addIssue({
          code: 'custom',
          message: `tlsCertPath and tlsKeyPath go together (a client certificate and its key); only ${t.tlsCertPath === undefined ? 'the key' : 'the certificate'} is set`,
          path: [t.tlsCertPath === undefined ? 'tlsKeyPath' : 'tlsCertPath'],
        });
      })
      .prefault({}),
    nats: z
      .object({
        url: Setting.default('nats://127.0.0.1:4222'),
      })
      .strict()
      .prefault({}),
    router: z
      .object({
        policy: RoutingPolicyName.default('prefix_affinity'),
        /** A member that has not announced itself for this long is out of rotation. */
        memberTtlMs: z
          .number()
          .int()
          // Members announce themselves every second while busy: a TTL closer to that drops (and fails over) members
          // that are only between two announcements.
          .min(1500, 'must be at least 1500 ms: members announce themselves every 1000 ms')
          .max(3_600_000, 'must be at most 3600000 ms (an hour)')
          .default(3000),
        /** Routers tell each other which member served which prompt prefix (prefix_affinity across workers). */
        sharePlacements: z.boolean().default(true),
        /**
         * How long a member goes on with a router's requests without hearing from it: a rollout worker killed with
         * requests in flight sends no cancel, and its members stop that work when the lease runs out. 0: no lease.
         */
        leaseMs: z
          .number()
          .int()
          .refine(
            routerLeaseAllowed,
            `must be 0 (no lease) or from ${ROUTER_LEASE_MS.min} to ${ROUTER_LEASE_MS.max} ms`,
          )
          .default(ROUTER_LEASE_MS.default),
        /** Attempts across members before the pool is declared unavailable. */
        maxAttempts: z.number().int().positive().default(4),
        /**
         * Per-attempt timeout. Unset (the default), it is what a healthy server may take for the request's maxTokens
         * (2 min + maxTokens at 20 tok/s): it only has to catch a member that announces but does not answer, since a
         * silent one fails over within its TTL, and it must never cut off a long generation. The activity deadline
         * caps it either way.
         */
        attemptTimeoutMs: z.number().int().positive().optional(),
        /**
         * Requests whose encoded messages exceed this go by reference through the blob store. Default 512 KiB, or
         * maxRequestBytes when that is lower.
         */
        inlineRequestBytes: z.number().int().positive().optional(),
        /** Hard cap on a single request's prompt size. */
        maxRequestBytes: z
          .number()
          .int()
          .positive()
          .default(64 * 1024 * 1024),
      })
      .strict()
      .refine((r) => r.inlineRequestBytes === undefined || r.inlineRequestBytes <= r.maxRequestBytes, {
        message: 'inlineRequestBytes must not exceed maxRequestBytes',
        path: ['inlineRequestBytes'],
      })
      .transform((r) => ({
        ...r,
        inlineRequestBytes: r.inlineRequestBytes ?? Math.min(512 * 1024, r.maxRequestBytes),
      }))
      .prefault({}),
    store: z
      .object({
        /** Lifetime of a job's stored content (ms); 0 keeps it until `muse content delete`. */
        ttlMs: z
          .number()
          .int()
          .refine((ms) => ms === 0 || (ms >= 100 && ms <= MAX_STORE_TTL_MS), {
            message: `must be 0 (keep content until \`muse content delete\`) or from 100 to ${MAX_STORE_TTL_MS} ms, the ages JetStream takes`,
          })
          .default(7 * 24 * 3600 * 1000),
        /**
         * Copies JetStream keeps of each job's content buckets, on as many servers of a NATS cluster (1 on a single
         * server; 3 on a 3-node cluster so content outlives a node). Applies to buckets a job makes from then on.
         */
        replicas: z.number().int().min(1).max(5).default(1),
      })
      .strict()
      .prefault({}),
    telemetry: z
      .object({
        /** none | console (JSON lines on stderr) | file (JSON lines under dataDir/traces.jsonl, or `file` path) */
        exporter: z.enum(['none', 'console', 'file']).default('none'),
        file: Setting.optional(),
        serviceName: Setting.default('muse'),
      })
      .strict()
      .prefault({}),
  })
  .strict();

export type MuseConfig = z.infer<typeof ConfigSchema>;

/** Environment variables and the setting each sets; read as text unless the setting is a number or a flag. */
const ENV_MAP: Record<string, { path: string[]; number?: true; flag?: true }> = {
  MUSE_DATA_DIR: { path: ['dataDir'] },
  MUSE_TEMPORAL_ADDRESS: { path: ['temporal', 'address'] },
  MUSE_TEMPORAL_NAMESPACE: { path: ['temporal', 'namespace'] },
  MUSE_TASK_QUEUE: { path: ['temporal', 'taskQueue'] },
  MUSE_TEMPORAL_TLS: { path: ['temporal', 'tls'], flag: true },
  MUSE_TEMPORAL_TLS_CERT: { path: ['temporal', 'tlsCertPath'] },
  MUSE_TEMPORAL_TLS_KEY: { path: ['temporal', 'tlsKeyPath'] },
  MUSE_TEMPORAL_TLS_CA: { path: ['temporal', 'tlsCaPath'] },
  MUSE_TEMPORAL_TLS_SERVER_NAME: { path: ['temporal', 'tlsServerName'] },
  MUSE_TEMPORAL_API_KEY: { path: ['temporal', 'apiKey'] },
  MUSE_NATS_URL: { path: ['nats', 'url'] },
  MUSE_ROUTING_POLICY: { path: ['router', 'policy'] },
  MUSE_MEMBER_TTL_MS: { path: ['router', 'memberTtlMs'], number: true },
  MUSE_STORE_TTL_MS: { path: ['store', 'ttlMs'], number: true },
  MUSE_STORE_REPLICAS: { path: ['store', 'replicas'], number: true },
  MUSE_TRACE_EXPORTER: { path: ['telemetry', 'exporter'] },
  MUSE_TRACE_FILE: { path: ['telemetry', 'file'] },
};

const FLAG_VALUES = new Map([
  ['true', true],
  ['1', true],
  ['false', false],
  ['0', false],
]);

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** A file a setting or option names (`what`), read whole; a failure names the setting as well as the file. */
export function readNamedFile(what: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new ConfigError(`${what}: cannot read ${path}: ${(err as Error).message}`);
  }
}

/** Refuses a path a user gave for a file to write when it names a directory, naming the flag that gave it. */
export function refuseDirectory(flag: string, path: string): void {
  let isDirectory = path.endsWith('/');
  try {
    isDirectory ||= statSync(path, { throwIfNoEntry: false })?.isDirectory() === true;
  } catch {
    // Not reachable as a directory (a file on its way, say): whatever writes it says why.
  }
  if (isDirectory) throw new ConfigError(`${flag}: ${path} is a directory; name a file`);
}

/**
 * The configuration, from lowest precedence to highest: schema defaults, `defaults` (e.g. the local stack's
 * addresses), the config file, MUSE_* environment variables, `overrides`.
 */
export function loadConfig(
  opts: { file?: string; env?: NodeJS.ProcessEnv; defaults?: unknown; overrides?: unknown } = {},
): MuseConfig {
  const env = opts.env ?? process.env;
  const file = opts.file ?? env.MUSE_CONFIG;
  const raw: Record<string, unknown> = {};
  if (opts.defaults) deepMerge(raw, opts.defaults as Record<string, unknown>);
  if (file) {
    if (!existsSync(file)) throw new ConfigError(`config file ${file} does not exist`);
    const text = readNamedFile('the config file', file).toString('utf8');
    let fromFile: unknown;
    try {
      fromFile = JSON.parse(text);
    } catch (err) {
      throw new ConfigError(`config file ${file} is not valid JSON: ${(err as Error).message}`);
    }
    if (typeof fromFile !== 'object' || fromFile === null || Array.isArray(fromFile))
      throw new ConfigError(`config file ${file} must hold a JSON object`);
    deepMerge(raw, fromFile as Record<string, unknown>);
  }
  // Which variable set each setting, so an error about it names the variable the user set.
  const fromEnv = new Map<string, string>();
  for (const [name, { path, number, flag }] of Object.entries(ENV_MAP)) {
    const v = env[name];
    if (v === undefined || v === '') continue;
    if (number && Number.isNaN(decimalNumber(v)))
      throw new ConfigError(`${name} must be a number, got '${v}'`);
    if (flag && !FLAG_VALUES.has(v.toLowerCase()))
      throw new ConfigError(`${name} must be true or false (or 1 or 0), got '${v}'`);
    setPath(raw, path, number ? Number(v) : flag ? FLAG_VALUES.get(v.toLowerCase()) : v);
    fromEnv.set(path.join('.'), name);
  }
  if (opts.overrides) deepMerge(raw, opts.overrides as Record<string, unknown>);
  const parsed = ConfigSchema.safeParse(raw);
  if (!parsed.success) {
    const named = parsed.error.issues.map((i) => {
      const name = fromEnv.get(i.path.join('.'));
      return name ? { ...i, message: `${i.message} (set by ${name})` } : i;
    });
    throw new ConfigError(`invalid configuration: ${formatZodError({ issues: named })}`);
  }
  return parsed.data;
}

/**
 * The number `text` writes in plain decimal, or NaN: Number() reads '' and ' ' as 0 (a TTL of "forever", a wait of
 * none) and '0x10' as 16.
 */
export function decimalNumber(text: string): number {
  return /^\s*[-+]?(\d+\.?\d*|\.\d+)\s*$/.test(text) ? Number(text) : Number.NaN;
}

function setPath(obj: Record<string, unknown>, path: string[], value: unknown): void {
  let cur = obj;
  for (const key of path.slice(0, -1)) {
    if (typeof cur[key] !== 'object' || cur[key] === null) cur[key] = {};
    cur = cur[key] as Record<string, unknown>;
  }
  cur[path[path.length - 1]!] = value;
}

/** Keys that would reach Object.prototype through a merge (a config file's `"__proto__": {...}`). */
const PROTOTYPE_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

function deepMerge(target: Record<string, unknown>, src: Record<string, unknown>): void {
  for (const [k, v] of Object.entries(src)) {
    if (PROTOTYPE_KEYS.has(k)) throw new ConfigError(`invalid configuration: '${k}' is not a setting`);
    if (v === undefined) continue;
    if (v && typeof v === 'object' && !Array.isArray(v)) {
      if (typeof target[k] !== 'object' || target[k] === null) target[k] = {};
      deepMerge(target[k] as Record<string, unknown>, v as Record<string, unknown>);
    } else target[k] = v;
  }
}
