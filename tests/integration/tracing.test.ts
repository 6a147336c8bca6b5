// One OpenTelemetry trace per trajectory: client → workflow → activities → NATS → pool member.
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { startTrajectory } from '../../client/trajectories.js';
import { initTelemetry, shutdownTelemetry } from '../../common/telemetry.js';
import { connectClient } from '../../common/temporal.js';
import { sampleQuestions } from '../../sim/world.js';
import { inProcessMember, inProcessWorker, runMuse, testConfig, waitUntil } from '../helpers/stack.js';

describe('tracing', () => {
  it('puts client, workflow, activity and pool-member spans of one trajectory in one trace', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'muse-trace-')), 'traces.jsonl');
    const cfg = testConfig({ telemetry: { exporter: 'file', file } });
    initTelemetry(cfg, 'test');
    const member = await inProcessMember(cfg, { backend: 'sim' }, { pool: 'traced' });
    const worker = await inProcessWorker(cfg);
    const client = await connectClient(cfg);
    try {
      const [q] = sampleQuestions(1, 51);
      const handle = await startTrajectory(client, cfg, {
        question: q!.question,
        pool: 'traced',
        maxTurns: 20,
      });
      await handle.result();
      const read = () => readSpans(file);
      await waitUntil(() => read().some((s) => s.name === 'pool.generate'), 10_000, 'member spans');
      const spans = read();
      const start = spans.find((s) => s.name.startsWith('StartWorkflow:trajectory'));
      expect(start).toBeDefined();
      const inTrace = spans.filter((s) => s.traceId === start!.traceId).map((s) => s.name);
      expect(inTrace.some((n) => n.startsWith('RunWorkflow:trajectory'))).toBe(true);
      expect(inTrace.some((n) => n.startsWith('RunActivity:llmStep'))).toBe(true);
      expect(inTrace).toContain('pool.request');
      expect(inTrace).toContain('pool.generate');
    } finally {
      await client.connection.close();
      await worker.stop();
      await member.stop();
      await shutdownTelemetry();
    }
  });

  it('a trajectory started by muse run, a process that is only a client, is one trace with its worker and member spans', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'muse-trace-')), 'traces.jsonl');
    const cfg = testConfig({ telemetry: { exporter: 'file', file } });
    initTelemetry(cfg, 'test');
    const member = await inProcessMember(cfg, { backend: 'sim' }, { pool: 'traced-cli' });
    const worker = await inProcessWorker(cfg);
    try {
      const [q] = sampleQuestions(1, 52);
      const run = await runMuse(cfg, ['run', '--pool', 'traced-cli', '--max-turns', '20', q!.question]).done;
      expect(run.code, run.stderr).toBe(0);
      const spans = readSpans(file);
      // Only the CLI process started a workflow in this test.
      const start = spans.find((s) => s.name.startsWith('StartWorkflow:trajectory'));
      expect(start, 'the client span of muse run').toBeDefined();
      const inTrace = spans.filter((s) => s.traceId === start!.traceId).map((s) => s.name);
      expect(inTrace.some((n) => n.startsWith('RunWorkflow:trajectory'))).toBe(true);
      expect(inTrace).toContain('pool.generate');
      // muse run polls progress several times a second; those queries are not traced, each a trace of its own.
      expect(spans.filter((s) => s.name.startsWith('QueryWorkflow'))).toEqual([]);

      // The console exporter writes to stderr: what --json prints on stdout stays JSON.
      const consoleCfg = { ...cfg, telemetry: { ...cfg.telemetry, exporter: 'console' as const } };
      const json = await runMuse(consoleCfg, [
        'run',
        '--json',
        '--pool',
        'traced-cli',
        '--max-turns',
        '20',
        q!.question,
      ]).done;
      expect(json.code, json.stderr).toBe(0);
      expect(JSON.parse(json.stdout)).toMatchObject({ termination: expect.any(String) });
      expect(json.stderr).toContain('"name":"StartWorkflow:trajectory"');
    } finally {
      await worker.stop();
      await member.stop();
      await shutdownTelemetry();
    }
  });
});

function readSpans(file: string): { traceId: string; name: string }[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { traceId: string; name: string });
}
