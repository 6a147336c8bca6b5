// A durable trajectory end to end on the real Temporal dev server and nats-server, simulated pool.

import { randomUUID } from 'node:crypto';
import { type JetStreamManager, jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { MockActivityEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { ContextStore } from '../../activities/content.js';
import {
  CUT_OFF_ANSWER_OBSERVATION,
  CUT_OFF_TURN_OBSERVATION,
  createActivities,
  EMPTY_ANSWER_OBSERVATION,
  type LlmStepResult,
  type SummarizeResult,
  type ToolStepResult,
} from '../../activities/index.js';
import { contextPolicy, estimateTokens } from '../../agent/context.js';
import { parseTurn, TOOL_CALL_FORMAT_ERROR } from '../../agent/format.js';
import { RESUM_SUMMARY_SYSTEM_PROMPT } from '../../agent/prompts.js';
import type { StepLogSegment, StepRecord } from '../../agent/trajectory.js';
import type { ChatMessage } from '../../agent/types.js';
import { exportTrajectory, runningRunsOfJob } from '../../client/content.js';
import {
  JobSpecError,
  queryProgress,
  sayIfNoWorker,
  startTrajectory,
  workflowWorkerPolling,
} from '../../client/trajectories.js';
import { BlobNotFoundError, BlobStore, namespaceFor, parseBlobRef } from '../../common/blob-store.js';
import { readStepLog } from '../../common/step-log.js';
import { PoolMember } from '../../inference/member.js';
import { ContextLengthError } from '../../inference/types.js';
import { decodeWire, encodeWire, GenerateReplyWire, subjects } from '../../inference/wire.js';
import { SimBackend } from '../../sim/backend.js';
import { sampleQuestions } from '../../sim/world.js';
import { ToolRegistry } from '../../tools/registry.js';
import { createRolloutWorker } from '../../workers/rollout-worker.js';
import {
  inProcessMember,
  inProcessWorker,
  natsFor,
  runMuseInSuite,
  scriptedMember,
  testConfig,
  useSuite,
  waitUntil,
} from '../helpers/stack.js';

const suite = useSuite();
const { cfg } = suite;
let member: Awaited<ReturnType<typeof inProcessMember>>;
let worker: Awaited<ReturnType<typeof inProcessWorker>>;

beforeAll(async () => {
  member = await inProcessMember(cfg, { backend: 'sim', timeScale: 0 }, { id: 'sim-a' });
  worker = await inProcessWorker(cfg);
});

afterAll(async () => {
  await worker?.stop();
  await member?.stop();
});

const stepLog = (segments: StepLogSegment[]): Promise<StepRecord[]> =>
  readStepLog(new BlobStore(suite.nc), segments);

describe('telling whether a worker is there', () => {
  it('says a task queue nobody polls has no worker, once, and that one a worker polls has', async () => {
    const nobody = {
      ...cfg,
      temporal: { ...cfg.temporal, taskQueue: `nobody-polls-${randomUUID().slice(0, 8)}` },
    };
    expect(await workflowWorkerPolling(suite.client, nobody)).toBe(false);
    // The worker of this file polls cfg's task queue.
    await waitUntil(
      async () => (await workflowWorkerPolling(suite.client, cfg)) === true,
      10_000,
      'poller seen',
    );
    const said: string[] = [];
    // Checked every 50 ms here: told once while the workers stay missing, not at every check.
    const quietNobody = sayIfNoWorker(suite.client, nobody, (why) => said.push(why), 10, 50);
    const quiet = sayIfNoWorker(suite.client, cfg, (why) => said.push(why), 10, 50);
    await new Promise((r) => setTimeout(r, 500));
    await Promise.all([quietNobody(), quiet()]);
    expect(said).toEqual([
      `no worker is polling task queue '${nobody.temporal.taskQueue}': is a rollout worker (muse worker) running?`,
    ]);
  });
});

describe('content store', () => {
  it('writes a value once when it is put several times at once', async () => {
    const blobs = new BlobStore(suite.nc);
    const ns = `dedupe-${Date.now()}`;
    const refs = await Promise.all(Array.from({ length: 5 }, () => blobs.put(ns, 'the same observation')));
    expect(new Set(refs).size).toBe(1);
    const info = await (await jetstreamManager(suite.nc)).streams.info(`KV_muse-${ns}`);
    expect(info.state.last_seq).toBe(1);
    await blobs.deleteNamespace(ns);
  });

  it('a read that a lagging replica answers with nothing asks the stream leader before calling the content missing', async () => {
    const writer = new BlobStore(suite.nc);
    const ns = `lagging-${Date.now()}`;
    const ref = await writer.put(ns, 'the turn the step before wrote');
    await writer.setMemo(ns, 'tool/step-3', { observation: 'recorded' });
    const reader = new BlobStore(suite.nc);
    await expect(reader.get(ref)).resolves.toBe('the turn the step before wrote');
    // From now on every kv.get of the reader's handle is answered as a replica without the write would answer it.
    const kv = await (
      reader as unknown as { kvs: Map<string, Promise<{ get: () => Promise<null> }>> }
    ).kvs.get(ns)!;
    kv.get = async () => null;
    const fresh = new BlobStore(suite.nc);
    (fresh as unknown as { kvs: Map<string, Promise<unknown>> }).kvs.set(ns, Promise.resolve(kv));
    await expect(fresh.get(ref)).resolves.toBe('the turn the step before wrote');
    await expect(fresh.getMemo(ns, 'tool/step-3')).resolves.toEqual({ observation: 'recorded' });
    // What is really gone is still missing.
    await expect(fresh.getMemo(ns, 'tool/step-4')).resolves.toBeUndefined();
    await (await new Kvm(suite.nc).open(`muse-${ns}`)).delete(parseBlobRef(ref).key);
    await expect(new BlobStore(suite.nc).get(ref)).rejects.toBeInstanceOf(BlobNotFoundError);
    await writer.deleteNamespace(ns);
    await expect(fresh.get(`kv:${ns}:${'0'.repeat(64)}`)).rejects.toBeInstanceOf(BlobNotFoundError);
    for (const s of [writer, reader, fresh]) s.close();
  });

  it('writes a value again when it is put after its entry expired', async () => {
    const blobs = new BlobStore(suite.nc);
    const ns = `rewrite-${Date.now()}`;
    const ref = await blobs.put(ns, 'an observation seen twice');
    // As the bucket's TTL would: the entry goes, the bucket stays.
    await (await new Kvm(suite.nc).open(`muse-${ns}`)).purge(parseBlobRef(ref).key);
    expect(await blobs.put(ns, 'an observation seen twice')).toBe(ref);
    // Another process resolves the reference from the store, not from this one's cache.
    expect(await new BlobStore(suite.nc).get(ref)).toBe('an observation seen twice');
    await blobs.deleteNamespace(ns);
  });

  it('writes a large value to the object store when the store keeps content forever (TTL 0)', async () => {
    const blobs = new BlobStore(suite.nc, { ttlMs: 0 });
    const ns = `forever-${Date.now()}`;
    const page = 'a fetched page '.repeat(20_000); // 300 KB: over the KV limit, so an object
    const ref = await blobs.put(ns, page);
    expect(parseBlobRef(ref).kind).toBe('obj');
    // Another process reads it from the store, not from the writer's cache.
    expect(await new BlobStore(suite.nc, { ttlMs: 0 }).get(ref)).toBe(page);
    await blobs.deleteNamespace(ns);
  });

  it('writes a large value again when its entry outlived its chunks (a put whose last step was not acknowledged)', async () => {
    const blobs = new BlobStore(suite.nc);
    const ns = `dangling-${Date.now()}`;
    const page = 'a fetched page '.repeat(20_000);
    const ref = await blobs.put(ns, page);
    expect(parseBlobRef(ref).kind).toBe('obj');
    // What a put leaves when its entry was stored but its acknowledgement lost: the chunks purged, the entry there.
    const jsm = await jetstreamManager(suite.nc);
    const stream = `OBJ_muse-${ns}`;
    const chunks = `$O.muse-${ns}.C.>`;
    const stored = (await jsm.streams.info(stream, { subjects_filter: chunks })).state.subjects ?? {};
    expect(Object.keys(stored)).toHaveLength(1);
    await jsm.streams.purge(stream, { filter: chunks });
    expect((await jsm.streams.info(stream, { subjects_filter: chunks })).state.subjects).toBeUndefined();
    // The retry writes it again instead of handing out a reference no one can read.
    const again = new BlobStore(suite.nc);
    expect(await again.put(ns, page)).toBe(ref);
    expect(await new BlobStore(suite.nc).get(ref)).toBe(page);
    await blobs.deleteNamespace(ns);
    for (const b of [blobs, again]) b.close();
  });

  it('a process whose buckets were deleted under it makes them again instead of failing every later put', async () => {
    const blobs = new BlobStore(suite.nc);
    const ns = `reopened-${Date.now()}`;
    const page = 'a long page '.repeat(25_000);
    await blobs.put(ns, 'before');
    await blobs.put(ns, page);
    await blobs.setMemo(ns, 'a tool call', 'its result');
    // Deleted behind this store's back (no announcement reaches it): its open handles now point at nothing.
    const jsm = await jetstreamManager(suite.nc);
    await jsm.streams.delete(`KV_muse-${ns}`);
    await jsm.streams.delete(`OBJ_muse-${ns}`);
    // A read finds nothing, and makes no bucket.
    expect(await blobs.getMemo(ns, 'a tool call')).toBeUndefined();
    await expect(jsm.streams.info(`KV_muse-${ns}`)).rejects.toThrow(/not found/);
    const small = await blobs.put(ns, 'after');
    const large = await blobs.put(ns, page);
    const reader = new BlobStore(suite.nc);
    expect(await reader.get(small)).toBe('after');
    expect(await reader.get(large)).toBe(page);
    expect(blobs.generation(ns)).toBeGreaterThan(0);
    await blobs.deleteNamespace(ns);
  });

  it('a process reading content of a deleted job finds it gone and does not bring its buckets back', async () => {
    const ns = `gone-${Date.now()}`;
    const writer = new BlobStore(suite.nc);
    const small = await writer.put(ns, 'a turn');
    const large = await writer.put(ns, 'a long page '.repeat(25_000));
    await writer.deleteNamespace(ns);
    // A process that never opened them (muse content get, a pool member resolving a request) reads.
    const reader = new BlobStore(suite.nc);
    await expect(reader.get(small)).rejects.toThrow(BlobNotFoundError);
    await expect(reader.get(large)).rejects.toThrow(BlobNotFoundError);
    expect(await reader.getMemo(ns, 'a tool call')).toBeUndefined();
    const jsm = await jetstreamManager(suite.nc);
    await expect(jsm.streams.info(`KV_muse-${ns}`)).rejects.toThrow(/not found/);
    await expect(jsm.streams.info(`OBJ_muse-${ns}`)).rejects.toThrow(/not found/);
    // Writing makes them again, and the reader then finds what was written.
    const again = await reader.put(ns, 'a turn');
    expect(await new BlobStore(suite.nc).get(again)).toBe('a turn');
    await reader.deleteNamespace(ns);
  });

  it('after muse content delete elsewhere, a worker writes its remembered texts again instead of handing out dead references', async () => {
    const worker = new BlobStore(suite.nc);
    const content = new ContextStore(worker);
    const ns = `deleted-${Date.now()}`;
    const ref = await content.putText(ns, 'the question');
    expect(await content.putText(ns, 'the question')).toBe(ref); // remembered: no write
    await new BlobStore(suite.nc).deleteNamespace(ns); // the CLI's own store
    await waitUntil(() => worker.generation(ns) > 0, 5000, 'the deletion to reach the worker');
    expect(await content.putText(ns, 'the question')).toBe(ref);
    expect(await new BlobStore(suite.nc).get(ref)).toBe('the question');
    await worker.deleteNamespace(ns);
  });

  it('a text read while its job is deleted is not remembered: its reference is written again, not handed out dead', async () => {
    const worker = new BlobStore(suite.nc);
    const content = new ContextStore(worker);
    const ns = `read-deleted-${Date.now()}`;
    const ref = await new BlobStore(suite.nc).put(ns, 'the page');
    // The deletion notice is handled while the read waits for its reply.
    const reading = content.getText(ref);
    (worker as unknown as { dropNamespace(ns: string): void }).dropNamespace(ns);
    expect(await reading).toBe('the page');
    expect(worker.writtenAt(ref)).toBe(Number.NEGATIVE_INFINITY);
    // The deletion itself, whose notice that was (no other reaches the worker).
    await (await jetstreamManager(suite.nc)).streams.delete(`KV_muse-${ns}`);
    // Asked for the text's reference, the context writes it again: the one read points at nothing now.
    const written = await content.putText(ns, 'the page');
    expect(written).toBe(ref);
    expect(await new BlobStore(suite.nc).get(written)).toBe('the page');
    await worker.deleteNamespace(ns);
  });

  it('a context writes its texts again once half the store TTL has passed since the store wrote them, and not sooner', async () => {
    const writes: string[] = [];
    class CountingStore extends BlobStore {
      override async put(namespace: string, value: unknown): Promise<string> {
        if (typeof value === 'string') writes.push(value);
        return super.put(namespace, value);
      }
    }
    // A TTL long enough that a loaded machine's pauses stay well inside each window: fresh for 5 s, kept for 10 s.
    const blobs = new CountingStore(suite.nc, { ttlMs: 10_000 });
    const content = new ContextStore(blobs);
    const ns = `refresh-${Date.now()}`;
    const elsewhere = new BlobStore(suite.nc, { ttlMs: 10_000 }); // another worker's store
    const ref = await content.putText(ns, 'the question');
    const aged = await elsewhere.put(ns, 'read when old');
    expect(await content.putText(ns, 'the question')).toBe(ref);
    expect(writes).toEqual(['the question']);
    // Past half the TTL: handing out the old reference could outlive the entry.
    await new Promise((r) => setTimeout(r, 5500));
    expect(await content.putText(ns, 'the question')).toBe(ref);
    expect(writes).toEqual(['the question', 'the question']);
    // A text read back carries the store's write time: one another worker just wrote is not written again...
    const fresh = await elsewhere.put(ns, 'read fresh');
    await content.getText(fresh);
    expect(await content.putText(ns, 'read fresh')).toBe(fresh);
    expect(writes.filter((w) => w === 'read fresh')).toHaveLength(0);
    // ...and one written past half the TTL ago is written once before its reference is handed out.
    await content.getText(aged);
    await content.putText(ns, 'read when old');
    await content.putText(ns, 'read when old');
    expect(writes.filter((w) => w === 'read when old')).toHaveLength(1);
    // A large text another worker stored a while ago is kept, not written again, and its reference ages from then.
    const page = 'a long page '.repeat(25_000);
    await elsewhere.put(ns, page);
    await new Promise((r) => setTimeout(r, 2000));
    await content.putText(ns, page); // the stored copy is fresh (fresh for 5 s): kept
    await new Promise((r) => setTimeout(r, 4000));
    await content.putText(ns, page); // 6 s after the store wrote it: written again before it is handed out
    expect(writes.filter((w) => w === page)).toHaveLength(2);
    await blobs.deleteNamespace(ns);
  });
});

describe('a prompt the server refuses as too long', () => {
  it("is cut and sent again, and the step reports the estimate of what was sent: the next step's budget is calibrated on it", async () => {
    const sent: ChatMessage[][] = [];
    const member = new PoolMember({
      nc: suite.nc,
      pool: 'dense',
      id: 'dense',
      backend: {
        kind: 'scripted',
        async generate(req) {
          sent.push(req.messages);
          // A server whose tokenizer counts this page as far denser than the estimate: the whole prompt is refused.
          if (sent.length === 1) throw new ContextLengthError('maximum context length is 32768 tokens');
          const text = '<think>enough</think><answer>A</answer>';
          return {
            text,
            tokens: [{ token: text, logprob: -0.1, topLogprobs: [-0.1, -2.5] }],
            usage: { promptTokens: 3000, cachedPromptTokens: 0, completionTokens: 10 },
            finishReason: 'stop',
            model: 'dense',
          };
        },
      },
    });
    await member.start();
    const blobs = new BlobStore(suite.nc);
    const activities = createActivities({ nc: suite.nc, blobs, tools: new ToolRegistry([]), config: cfg });
    try {
      const jobId = `dense-${randomUUID().slice(0, 8)}`;
      const iterresearch = contextPolicy('iterresearch');
      const turn = '<think>look</think><tool_call>{"name":"visit","arguments":{"url":"u"}}</tool_call>';
      const state = iterresearch.advance(
        iterresearch.initial('Q?'),
        parseTurn(turn),
        turn,
        'a dense page '.repeat(4000),
      );
      const contextRef = await new ContextStore(blobs).putContext(namespaceFor(jobId), 'iterresearch', state);
      const result = (await new MockActivityEnvironment({
        currentAttemptScheduledTimestampMs: Date.now(),
        startToCloseTimeoutMs: 60_000,
      }).run(activities.llmStep, {
        jobId,
        trajectoryId: `traj-${jobId}`,
        step: 1,
        policy: 'iterresearch' as const,
        summaryThreshold: 0.9,
        contextRef,
        pool: 'dense',
        sampling: { temperature: 0.85, topLogprobs: 2, maxTokensPerTurn: 1000 },
        seed: 1,
        contextWindow: 32_768,
      })) as LlmStepResult;
      expect(result.status).toBe('turn');
      expect(sent).toHaveLength(2);
      const [whole, cut] = sent.map((m) => estimateTokens(m));
      expect(cut!).toBeLessThan(whole!);
      // Not the refused prompt's: the server's 3000 tokens over that would halve the ratio of tokens to estimate.
      expect(result.estimatedPromptTokens).toBe(cut);
    } finally {
      await member.stop();
    }
  });
});

describe('resum summary step', () => {
  it('leaves the history alone and says the window is full when the summary is cut off or the prompt refused', async () => {
    let mode: 'cut' | 'refuse' | 'whole' = 'cut';
    const raw = (text: string, finishReason: 'stop' | 'length') => ({
      text,
      tokens: [{ token: text, logprob: -0.1, topLogprobs: [-0.1, -2.5] }],
      usage: { promptTokens: 900, cachedPromptTokens: 0, completionTokens: 100 },
      finishReason,
      model: 'summariser',
    });
    const member = new PoolMember({
      nc: suite.nc,
      pool: 'summaries',
      id: 'summariser',
      backend: {
        kind: 'scripted',
        async generate() {
          if (mode === 'refuse') throw new ContextLengthError('maximum context length is 6000 tokens');
          if (mode === 'cut')
            return raw('<think>Let me go through the history. Step 1 searched for', 'length');
          return raw('<think>done</think><summary>Found: the founder is A.</summary>', 'stop');
        },
      },
    });
    await member.start();
    const blobs = new BlobStore(suite.nc);
    const activities = createActivities({ nc: suite.nc, blobs, tools: new ToolRegistry([]), config: cfg });
    try {
      const jobId = `summary-${randomUUID().slice(0, 8)}`;
      const content = new ContextStore(blobs);
      const resum = contextPolicy('resum');
      const turn = '<think>look</think><tool_call>{"name":"search","arguments":{"query":["q"]}}</tool_call>';
      const state = resum.advance(resum.initial('Q?'), parseTurn(turn), turn, 'a page');
      const contextRef = await content.putContext(namespaceFor(jobId), 'resum', state);
      const input = {
        jobId,
        trajectoryId: `traj-${jobId}`,
        step: 1,
        policy: 'resum' as const,
        contextRef,
        pool: 'summaries',
        sampling: { temperature: 0.85, topLogprobs: 2, maxTokensPerTurn: 100 },
        seed: 1,
        contextWindow: 6000,
      };
      const summarize = (): Promise<SummarizeResult> =>
        new MockActivityEnvironment({
          currentAttemptScheduledTimestampMs: Date.now(),
          startToCloseTimeoutMs: 60_000,
        }).run(activities.summarizeStep, input) as Promise<SummarizeResult>;
      const cut = await summarize();
      expect(cut).toMatchObject({ status: 'max_context', contextRef, reason: /cut off at 100 tokens/ });
      mode = 'refuse';
      expect(await summarize()).toMatchObject({ status: 'max_context', contextRef, reason: /refuses/ });
      mode = 'whole';
      const done = await summarize();
      expect(done.status).toBe('summarized');
      expect((await content.getContext(done.contextRef)).state).toMatchObject({
        steps: [],
        summary: 'Found: the founder is A.',
      });
    } finally {
      await member.stop();
    }
  });
});

/**
 * toolStep on a react step whose turn calls `search`, served by `run`; the context and turn are written through a
 * store of their own (so `blobs`, the activities' store, sees only what the step writes).
 */
async function searchStep(blobs: BlobStore, run: () => Promise<string>) {
  const tools = new ToolRegistry([
    { name: 'search', description: 'a test search', args: z.object({ query: z.array(z.string()) }), run },
  ]);
  const activities = createActivities({ nc: suite.nc, blobs, tools, config: cfg });
  const jobId = `tool-${randomUUID().slice(0, 8)}`;
  const ns = namespaceFor(jobId);
  const content = new ContextStore(new BlobStore(suite.nc));
  const input = {
    jobId,
    trajectoryId: `traj-${jobId}`,
    step: 0,
    policy: 'react' as const,
    contextRef: await content.putContext(ns, 'react', contextPolicy('react').initial('Q?')),
    turnRef: await content.putText(
      ns,
      '<think>look</think><tool_call>{"name": "search", "arguments": {"query": ["q"]}}</tool_call>',
    ),
  };
  // A step's time as the workflow gives it (the mock's own 1 s would leave the tool none, after the room for writes).
  const step = (attempt = 1, over: Partial<typeof input> = {}) =>
    new MockActivityEnvironment({ attempt, startToCloseTimeoutMs: 60_000 }).run(activities.toolStep, {
      ...input,
      ...over,
    }) as Promise<ToolStepResult>;
  return { step, content, ns };
}

describe('tool steps', () => {
  it('a retried toolStep takes the observation its first attempt recorded instead of running the tool again', async () => {
    // A store whose first context write fails: the attempt fails after its tool has answered, as when NATS hiccups.
    let failContextWrite = true;
    class FlakyStore extends BlobStore {
      override async put(namespace: string, value: unknown): Promise<string> {
        if (failContextWrite && (value as { kind?: string } | null)?.kind === 'muse.context') {
          failContextWrite = false;
          throw new Error('JetStream timeout (injected)');
        }
        return super.put(namespace, value);
      }
    }
    let runs = 0;
    const { step, content } = await searchStep(new FlakyStore(suite.nc), async () => {
      runs++;
      return `result of run ${runs}`;
    });
    await expect(step()).rejects.toThrow(/injected/);
    expect(runs).toBe(1);
    const retried = await step(2);
    expect(runs).toBe(1);
    expect(await content.getText(retried.observationRef)).toBe('result of run 1');
    // Another step with the same turn is a new tool call.
    await step(1, { step: 1 });
    expect(runs).toBe(2);
  });

  it("a failing tool's whole message is the observation; history gets its first 1000 characters", async () => {
    const blobs = new BlobStore(suite.nc);
    const page = `upstream said: ${'<html>'.repeat(2_000)}`;
    const { step, content, ns } = await searchStep(blobs, async () => {
      throw new Error(page);
    });
    const r = await step();
    expect(await content.getText(r.observationRef)).toContain(page);
    expect(r.toolError!.startsWith(`Error: tool 'search' failed: upstream said: <html>`)).toBe(true);
    expect(r.toolError!.length).toBeLessThan(1100);
    expect(r.toolError).toMatch(/more characters omitted\]$/);
    await blobs.deleteNamespace(ns);
  });
});

describe('rollout worker lifecycle', () => {
  it('a worker shut down without having run lets go of its connections', async () => {
    const w = await createRolloutWorker({ config: cfg });
    await w.shutdown();
    expect(w.nc.isClosed()).toBe(true);
    expect(w.worker.getState()).toBe('STOPPED');
  });

  it('a worker whose content store settings the NATS server refuses does not start, and names them', async () => {
    // The test server is a single node: three copies of each bucket cannot be kept.
    const err = await createRolloutWorker({ config: { ...cfg, store: { ...cfg.store, replicas: 3 } } }).then(
      async (w) => {
        await w.shutdown(); // started after all: stopped, and the test fails below
        return w;
      },
      (e: unknown) => e as Error,
    );
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(/store\.replicas 3, MUSE_STORE_REPLICAS/);
    expect((err as Error).message).toMatch(/replicas > 1 not supported/);
    // The probe's bucket is not left behind.
    const jsm = await jetstreamManager(suite.nc);
    const names: string[] = [];
    for await (const name of jsm.streams.names()) names.push(name);
    expect(names.filter((n) => n.includes('museprobe'))).toEqual([]);
  });

  it("the content store's probe bucket is deleted even when the first delete fails (a leader election under way)", async () => {
    const store = new BlobStore(suite.nc);
    const jsm = await jetstreamManager(suite.nc);
    let deletes = 0;
    // The store's JetStream manager, whose first stream delete fails as one during a leader election can.
    (store as unknown as { jsm: Promise<JetStreamManager> }).jsm = Promise.resolve({
      ...jsm,
      streams: {
        ...jsm.streams,
        delete: (name: string) =>
          ++deletes === 1
            ? Promise.reject(new Error('JetStream system temporarily unavailable'))
            : jsm.streams.delete(name),
      },
    } as JetStreamManager);
    await store.checkSettings();
    store.close();
    expect(deletes).toBe(2);
    const names: string[] = [];
    for await (const name of jsm.streams.names()) names.push(name);
    expect(names.filter((n) => n.includes('museprobe'))).toEqual([]);
  });

  it("a worker given a connection leaves none of its routers' or content store's subscriptions on it once stopped", async () => {
    const own = testConfig();
    const nc = await natsFor(own);
    // Its own, not the connection's request inbox (made by the first request, kept for the connection's life).
    const subscriptions = () =>
      (
        nc as unknown as { protocol: { subscriptions: { all(): { subject: string }[] } } }
      ).protocol.subscriptions
        .all()
        .filter((s) => !s.subject.startsWith('_INBOX.')).length;
    let w: Awaited<ReturnType<typeof inProcessWorker>> | undefined;
    try {
      const before = subscriptions();
      w = await inProcessWorker(own, { nc });
      const [q] = sampleQuestions(1, 11);
      await (await startTrajectory(suite.client, own, { question: q!.question, maxTurns: 4 })).result();
      expect(subscriptions()).toBeGreaterThan(before); // the default pool's router listens for its members
      await w.stop();
      w = undefined;
      expect(subscriptions()).toBe(before);
    } finally {
      await w?.stop();
      await nc.close();
    }
  });
});

describe('trajectory workflow', () => {
  it('runs a sample question to an answer, recording every step by reference', async () => {
    const [q] = sampleQuestions(1, 11);
    const handle = await startTrajectory(suite.client, cfg, { question: q!.question, maxTurns: 40 });
    const result = await handle.result();
    expect(result.termination).toBe('answer');
    expect(result.prediction).toBeTruthy();
    expect(result.steps).toBeGreaterThan(1);
    expect(result.usage.llmCalls).toBe(result.steps);
    expect(result.usage.promptTokens).toBeGreaterThan(0);
    expect(result.usage.completionTokens).toBeGreaterThan(0);
    // Uncertainty is tallied over its turns; the per-step branching facts are left out (nothing branches from it).
    expect(result.uncertainty.scoredTurns).toBeGreaterThan(0);
    expect(result.branchable).toBeUndefined();
    const log = await stepLog(result.log);
    expect(log.map((s) => s.step)).toEqual([...Array(result.steps).keys()]);
    expect(log.at(-1)!.kind).toBe('answer');
    // The simulator's text is labelled as such, in the result and on every step.
    expect(result.models).toEqual(['muse-sim (simulator, not a language model)']);
    for (const s of log) expect(s.model).toBe('muse-sim (simulator, not a language model)');
    for (const s of log.slice(0, -1)) expect(s.observationRef).toMatch(/^(kv|obj):/);
    expect(log[0]!.regions.all_ppl).toBeGreaterThan(1);
    const progress = await queryProgress(handle);
    expect(progress).toMatchObject({ status: 'finished', termination: 'answer', step: result.steps });
  });

  it("tells the model the spec's date in every turn's system prompt", async () => {
    const pool = `dated-${randomUUID().slice(0, 8)}`;
    const sim = new SimBackend({ profile: { timeScale: 0 } });
    const systems: string[] = [];
    const member = await scriptedMember(suite.nc, pool, async (req, signal) => {
      systems.push(req.messages?.[0]?.content ?? '');
      return sim.generate(req, signal);
    });
    try {
      const [q] = sampleQuestions(1, 11);
      const handle = await startTrajectory(suite.client, cfg, {
        question: q!.question,
        maxTurns: 40,
        pool,
        date: '2026-12-02',
      });
      const result = await handle.result();
      expect(result.termination).toBe('answer');
      expect(systems).toHaveLength(result.steps);
      for (const s of systems)
        expect(s).toMatch(/^You are a deep research assistant[\s\S]*\n\nCurrent date: 2026-12-02$/);
    } finally {
      await member.stop();
      await sim.close();
    }
  });

  it('muse content delete refuses a job whose runs still go on (they would fail at their next step), unless --force', async () => {
    const [q] = sampleQuestions(1, 12);
    const jobId = `busy-${randomUUID().slice(0, 8)}`;
    // A pool nobody serves: the run waits on its first step, its question's content stored.
    const handle = await startTrajectory(
      suite.client,
      cfg,
      { question: q!.question, pool: 'nobody' },
      { jobId },
    );
    try {
      await waitUntil(
        async () => (await handle.describe()).raw.pendingActivities?.length === 1,
        20_000,
        'the first step under way',
      );
      expect(await runningRunsOfJob(suite.client, jobId)).toEqual([handle.workflowId]);
      expect(await runningRunsOfJob(suite.client, `${jobId}-other`)).toEqual([]);
      const refused = await runMuseInSuite(suite, cfg, ['content', 'delete', jobId]).done;
      expect(refused.code).toBe(1);
      expect(refused.stderr).toContain(`job ${jobId} has 1 run(s) still going (${handle.workflowId})`);
      expect(refused.stderr).toMatch(/cancel them \(muse cancel <id>\), or pass --force/);
      const forced = await runMuseInSuite(suite, cfg, ['content', 'delete', jobId, '--force']).done;
      expect(forced.code, forced.stderr).toBe(0);
      expect(forced.stdout).toMatch(/^deleted KV_muse-/);
    } finally {
      await handle.terminate('test over');
    }
    // Terminated, it has no result to list its steps: export says so, with the reason it was terminated.
    await expect(exportTrajectory(suite.client, suite.nc, handle.workflowId).next()).rejects.toThrow(
      `${handle.workflowId} was terminated: it has no result, which lists its steps, to export (test over)`,
    );
    // Ended: deleted without --force, once the listing has caught up with the end (it follows a moment behind).
    await waitUntil(
      async () => (await runningRunsOfJob(suite.client, jobId)).length === 0,
      20_000,
      'the run listed as ended',
    );
    const after = await runMuseInSuite(suite, cfg, ['content', 'delete', jobId]).done;
    expect(after.code, after.stderr).toBe(0);
  });

  it('rejects an invalid job spec with a message naming the field', async () => {
    await expect(startTrajectory(suite.client, cfg, { question: 'q', maxTurns: -3 })).rejects.toThrow(
      JobSpecError,
    );
    await expect(startTrajectory(suite.client, cfg, { question: 'q', maxTurns: -3 })).rejects.toThrow(
      /maxTurns/,
    );
    await expect(startTrajectory(suite.client, cfg, { question: '   ' })).rejects.toThrow(/question/);
    await expect(
      startTrajectory(suite.client, cfg, { question: 'q', policy: 'magic' as never }),
    ).rejects.toThrow(/policy/);
  });

  it('a workflow started by hand, past the client, fills in defaults, and fails naming a bad field instead of hanging', async () => {
    const start = (type: 'trajectory' | 'parallelMuse', input: unknown) =>
      suite.client.workflow.start(type, {
        taskQueue: cfg.temporal.taskQueue,
        workflowId: `by-hand-${randomUUID().slice(0, 8)}`,
        args: [input],
      });
    const failure = async (type: 'trajectory' | 'parallelMuse', input: unknown) => {
      const err = await (await start(type, input)).result().then(
        () => undefined,
        (e: unknown) => e as { cause?: { type?: string; message?: string; nonRetryable?: boolean } },
      );
      expect(err?.cause).toMatchObject({ type: 'InvalidInputError', nonRetryable: true });
      return err!.cause!.message;
    };
    const [q] = sampleQuestions(1, 11);
    const result = await (
      await start('trajectory', { spec: { question: q!.question }, jobId: `by-hand-${Date.now()}` })
    ).result();
    expect(result.termination).toBe('answer');
    expect(await failure('trajectory', { spec: { question: 'q', maxTurns: -3 }, jobId: 'j' })).toMatch(
      /^trajectory: invalid input: spec\.maxTurns: /,
    );
    expect(await failure('trajectory', { spec: { question: 'q' } })).toMatch(/jobId/);
    expect(
      await failure('trajectory', { spec: { question: 'q' }, jobId: 'j', timeouts: { stepMs: '1m' } }),
    ).toMatch(/timeouts\.stepMs/);
    expect(await failure('trajectory', null)).toMatch(/trajectory: invalid input/);
    expect(
      await failure('parallelMuse', { spec: { trajectory: { question: 'q' }, n: 0 }, jobId: 'j' }),
    ).toMatch(/^parallelMuse: invalid input: spec\.n: /);
    // A plan whose history could pass what Temporal keeps (the clients refuse it before starting): refused before
    // any rollout starts, with the estimate, rather than ended by Temporal at 50 MB with every rollout's work.
    const tooBig = await start('parallelMuse', {
      spec: { n: 1024, trajectory: { question: 'x'.repeat(20_000) } },
      jobId: 'j',
    });
    const err = await tooBig.result().then(
      () => undefined,
      (e: unknown) => e as { cause?: { type?: string; message?: string; nonRetryable?: boolean } },
    );
    expect(err?.cause).toMatchObject({ type: 'BudgetError', nonRetryable: true });
    expect(err!.cause!.message).toMatch(/^parallelMuse: this plan could grow .* about 67\.3 MB/);
    // No rollout was started.
    await expect(
      suite.client.workflow.getHandle(`${tooBig.workflowId}/initial-0`).describe(),
    ).rejects.toThrow(/not found/i);
  });

  it('turns a malformed tool call and an unknown tool into error observations and goes on', async () => {
    const [q] = sampleQuestions(1, 12);
    const handle = await startTrajectory(suite.client, cfg, {
      question: `${q!.question} [sim:malformed-tool-call@1] [sim:unknown-tool@2]`,
      maxTurns: 40,
    });
    const result = await handle.result();
    expect(result.termination).toBe('answer');
    const log = await stepLog(result.log);
    expect(log[1]!.kind).toBe('invalid_tool_call');
    // The model was told in the reference's words; the record says what was wrong (the simulator leaves it unclosed).
    expect(await new BlobStore(suite.nc).getText(log[1]!.observationRef!)).toBe(TOOL_CALL_FORMAT_ERROR);
    expect(log[1]!.toolError).toBe('tool call is not valid JSON');
    expect(log[2]!.kind).toBe('tool_call');
    expect(log[2]!.tool).toBe('teleport');
    expect(log[2]!.toolError).toMatch(/unknown tool 'teleport'/);
    expect(log.length).toBeGreaterThan(3);
  });

  it('an answer cut off at the token limit is not taken as the prediction: the model is told and answers again', async () => {
    const [q] = sampleQuestions(1, 13);
    const handle = await startTrajectory(suite.client, cfg, {
      question: `${q!.question} [sim:cut-answer@1]`,
      maxTurns: 40,
      sampling: { maxTokensPerTurn: 600 },
    });
    const result = await handle.result();
    expect(result.termination).toBe('answer');
    expect(result.prediction).not.toContain('rambling');
    const log = await stepLog(result.log);
    expect(log[1]).toMatchObject({
      kind: 'no_action',
      actionPreview: 'answer cut off at the token limit',
      toolError: CUT_OFF_ANSWER_OBSERVATION,
    });
    expect(log[1]!.usage.completionTokens).toBe(600);
    expect(log.length).toBeGreaterThan(2);
    // Cut off once: the steps after it act.
    expect(log.slice(2).filter((s) => s.kind === 'no_action')).toEqual([]);
  });

  it('an empty answer is not taken as the prediction: the model is told and answers again', async () => {
    const [q] = sampleQuestions(1, 14);
    const handle = await startTrajectory(suite.client, cfg, {
      question: `${q!.question} [sim:empty-answer@1]`,
      maxTurns: 40,
    });
    const result = await handle.result();
    expect(result.termination).toBe('answer');
    expect(result.prediction).not.toBe('?');
    const log = await stepLog(result.log);
    expect(log[1]).toMatchObject({
      kind: 'no_action',
      actionPreview: 'empty answer',
      toolError: EMPTY_ANSWER_OBSERVATION,
    });
    expect(log.length).toBeGreaterThan(2);
  });

  it.each(['react', 'iterresearch'] as const)(
    '%s: a turn cut off at the token limit before it acted is recorded as such, and the model told, not as no action',
    async (policy) => {
      const [q] = sampleQuestions(1, 13);
      const handle = await startTrajectory(suite.client, cfg, {
        question: `${q!.question} [sim:cut-think@1]`,
        policy,
        maxTurns: 40,
        // Room for iterresearch's report, which grows past 600 tokens within the run.
        sampling: { maxTokensPerTurn: 2048 },
      });
      const result = await handle.result();
      expect(result.termination).toBe('answer');
      const log = await stepLog(result.log);
      expect(log[1]).toMatchObject({
        kind: 'no_action',
        actionPreview: 'cut off at the token limit before an action',
        toolError: CUT_OFF_TURN_OBSERVATION,
      });
      expect(await new BlobStore(suite.nc).getText(log[1]!.observationRef!)).toBe(CUT_OFF_TURN_OBSERVATION);
      expect(log[1]!.usage.completionTokens).toBe(2048);
      expect(log.length).toBeGreaterThan(2);
      // Cut off once: the steps after it act.
      expect(log.slice(2).filter((s) => s.kind === 'no_action')).toEqual([]);
    },
  );

  it('ends each turn where the tool response would begin: what a model imagines past its call is never generated', async () => {
    const [q] = sampleQuestions(1, 13);
    const handle = await startTrajectory(suite.client, cfg, {
      question: `${q!.question} [sim:run-on@1]`,
      maxTurns: 40,
    });
    const result = await handle.result();
    expect(result.termination).toBe('answer');
    expect(result.prediction).not.toContain('imagined');
    const log = await stepLog(result.log);
    expect(log[1]).toMatchObject({ kind: 'tool_call', tool: 'search' });
    const turn = await new BlobStore(suite.nc).getText(log[1]!.turnRef);
    expect(turn).toMatch(/sim-run-on.*<\/tool_call>$/s);
    expect(log.length).toBeGreaterThan(2);
  });

  describe('resum on a server with a 6000-token context', () => {
    // The member refuses prompt + max_tokens past 6000 tokens, as vLLM does with --max-model-len 6000.
    let small: Awaited<ReturnType<typeof inProcessMember>>;
    beforeAll(async () => {
      small = await inProcessMember(
        cfg,
        { backend: 'sim', timeScale: 0, maxModelLen: 6000 },
        { id: 'sim-small', pool: 'small-window' },
      );
    });
    afterAll(async () => {
      await small?.stop();
    });
    /** A trajectory on the small-window pool: resum with the server's own window unless told otherwise. */
    const run = async (
      question: string,
      maxTokensPerTurn: number,
      o: {
        pool?: string;
        policy?: 'react' | 'resum' | 'iterresearch';
        contextWindow?: number;
        maxTurns?: number;
      } = {},
    ) => {
      const handle = await startTrajectory(suite.client, cfg, {
        question,
        policy: o.policy ?? 'resum',
        pool: o.pool ?? 'small-window',
        contextWindow: o.contextWindow ?? 6000,
        sampling: { maxTokensPerTurn },
        maxTurns: o.maxTurns ?? 40,
      });
      const result = await handle.result();
      const log = await stepLog(result.log);
      return { result, log, summarised: log.filter((s) => s.summarized).length };
    };

    it('summarises when a turn would no longer fit, below the 90% threshold', async () => {
      // 4000-token turns: past 2000 prompt tokens no turn fits, long before 5400 (90%).
      const [q] = sampleQuestions(1, 14);
      const { result, summarised } = await run(`${q!.question} [sim:min-turns=8]`, 4000);
      expect(result.termination).toBe('answer');
      expect(summarised).toBeGreaterThan(0);
      expect(result.usage.llmCalls).toBe(result.steps + summarised);
    });

    it('cuts the summary prompt to fit after a page larger than the whole window', async () => {
      // Visited pages padded to 30 kB (~7500 tokens): one visit takes the history past the window at once.
      const [q] = sampleQuestions(1, 15);
      const { result, summarised } = await run(
        `${q!.question} [sim:min-turns=6] [sim:obs-bytes=30000]`,
        2000,
      );
      expect(result.termination).toBe('answer');
      expect(summarised).toBeGreaterThan(0);
    });

    it.each([
      {
        pool: 'cut-summaries',
        text: '<think>Step 1 searched for',
        finishReason: 'length' as const,
        seed: 14,
      },
      // Reasoning alone, ended by the model: nothing to replace the history with.
      {
        pool: 'empty-summaries',
        text: '<think>I have read the whole history.</think>',
        finishReason: 'stop' as const,
        seed: 114,
      },
    ])(
      'a resum trajectory whose summary is unusable ($pool) ends with max_context, its steps kept',
      async ({ pool, text, finishReason, seed }) => {
        // The simulator with the same window, except that every summary is unusable.
        const sim = new SimBackend({ profile: { timeScale: 0 }, maxModelLen: 6000 });
        const cutter = await scriptedMember(suite.nc, pool, async (req, signal) => {
          const g = await sim.generate(req, signal);
          const summary = req.messages?.[0]?.content === RESUM_SUMMARY_SYSTEM_PROMPT;
          return summary ? { ...g, text, finishReason } : g;
        });
        try {
          const [q] = sampleQuestions(1, seed);
          const { result, log, summarised } = await run(`${q!.question} [sim:min-turns=8]`, 4000, { pool });
          expect(result.termination, pool).toBe('max_context');
          // Not a failure, but it says why: the summary it could not make.
          expect(result.error).toBeUndefined();
          expect(result.reason, pool).toMatch(
            finishReason === 'length'
              ? /^could not summarise: .*cut off at \d+ tokens \(maxTokensPerTurn\)/
              : /^could not summarise: /,
          );
          expect(result.steps).toBeGreaterThan(0);
          // Every step before the summary was kept, none of them marked summarised (no summary replaced the history).
          expect(log).toHaveLength(result.steps);
          expect(summarised).toBe(0);
          // One summary call was made and counted, after the turns.
          expect(result.usage.llmCalls).toBe(result.steps + 1);
        } finally {
          await cutter.stop();
          await sim.close();
        }
      },
    );

    it('react ends with max_context, not an error, when the server refuses a prompt the estimate let through', async () => {
      // The job declares a 12000-token window; the server's is 6000 (or its tokenizer counts more than the estimate):
      // the server's refusal is the window being full, not a failure.
      const [q] = sampleQuestions(1, 16);
      const { result } = await run(`${q!.question} [sim:min-turns=12] [sim:obs-bytes=3000]`, 1000, {
        policy: 'react',
        contextWindow: 12_000,
      });
      expect(result.termination).toBe('max_context');
      expect(result.error).toBeUndefined();
      expect(result.reason).toMatch(
        /^the server refused the prompt \(about \d+ tokens\) as over its context length/,
      );
    });

    it('react ends with max_context when its own estimate of the next prompt leaves no room for a turn, and says so', async () => {
      // A server with the default (large) window: only the job's 6000 tokens end the run.
      const [q] = sampleQuestions(1, 16);
      const { result } = await run(`${q!.question} [sim:min-turns=12] [sim:obs-bytes=3000]`, 1000, {
        pool: 'default',
        policy: 'react',
      });
      expect(result.termination).toBe('max_context');
      expect(result.steps).toBeGreaterThan(0);
      expect(result.reason).toMatch(
        /^the prompt \(about \d+ tokens\) leaves no room for a turn of sampling.maxTokensPerTurn 1000 in contextWindow 6000$/,
      );
    });

    it('iterresearch cuts a page the server refuses and goes on', async () => {
      // The same two windows; every page is ~30 kB, which the job's window takes and the server's does not.
      const [q] = sampleQuestions(1, 17);
      const { result, log } = await run(`${q!.question} [sim:min-turns=4] [sim:obs-bytes=30000]`, 1000, {
        policy: 'iterresearch',
        contextWindow: 12_000,
        maxTurns: 6,
      });
      expect(result.error).toBeUndefined();
      expect(result.termination).not.toBe('max_context');
      expect(result.steps).toBeGreaterThanOrEqual(4);
      // A page was fetched, and the turn after it (whose prompt carried the page) was generated.
      const visit = log.findIndex((s) => s.tool === 'visit');
      expect(visit, 'no page was fetched: nothing was too long for the server').toBeGreaterThanOrEqual(0);
      expect(log.length).toBeGreaterThan(visit + 1);
    });
  });

  it('a tool step that fails for good ends the run with its turn in the log, marked unfinished', async () => {
    const own = { ...cfg, temporal: { ...cfg.temporal, taskQueue: `${cfg.temporal.taskQueue}-tool-fails` } };
    let failedAt: number | undefined;
    const failing = await inProcessWorker(own, {
      onToolCall: (e) => {
        if (e.step === undefined || e.step < 2) return;
        failedAt ??= e.step;
        throw new TypeError(`tool refused at step ${e.step}`);
      },
    });
    try {
      const [q] = sampleQuestions(1, 13);
      const handle = await startTrajectory(suite.client, own, {
        question: `${q!.question} [sim:min-turns=6]`,
        maxTurns: 40,
      });
      const result = await handle.result();
      expect(result.termination).toBe('error');
      expect(result.error).toMatch(/tool refused at step/);
      expect(result.steps).toBe(failedAt);
      const log = await stepLog(result.log);
      expect(log.map((r) => r.step)).toEqual(Array.from({ length: failedAt! + 1 }, (_, i) => i));
      // The turn is kept, with why it has no observation; its usage is the run's too.
      expect(log.at(-1)).toMatchObject({ step: failedAt, kind: 'tool_call', unfinished: true });
      expect(log.at(-1)!.observationRef).toBeUndefined();
      expect(log.at(-1)!.toolError).toMatch(/^tool step failed: .*tool refused at step \d+/);
      expect(log.filter((r) => r.unfinished)).toHaveLength(1);
      expect(result.usage.llmCalls).toBe(log.length);
      expect(await new BlobStore(suite.nc).getText(log.at(-1)!.turnRef)).toMatch(/<tool_call>/);
    } finally {
      await failing.stop();
    }
  });

  it('ends cleanly with what it has when cancelled', async () => {
    // Its own worker, whose tool step at step 2 is held until the run is cancelled: the cancel comes mid-tool-step.
    const own = { ...cfg, temporal: { ...cfg.temporal, taskQueue: `${cfg.temporal.taskQueue}-cancel` } };
    let held: (() => void) | undefined;
    const release = new Promise<void>((ok) => (held = ok));
    let reached = false;
    const worker = await inProcessWorker(own, {
      onToolCall: (e) => {
        if (e.step !== 2) return;
        reached = true;
        return release;
      },
    });
    try {
      const [q] = sampleQuestions(1, 13);
      const handle = await startTrajectory(suite.client, own, {
        question: `${q!.question} [sim:min-turns=30]`,
        maxTurns: 40,
      });
      await waitUntil(() => reached, 60_000, 'the tool step of step 2');
      // Exporting it now is refused at once instead of waiting for the end.
      await expect(exportTrajectory(suite.client, suite.nc, handle.workflowId).next()).rejects.toThrow(
        /is still running: export it once it has ended/,
      );
      await handle.cancel();
      const result = await handle.result();
      expect(result.termination).toBe('cancelled');
      expect(result.steps).toBe(2);
      // One record per finished step, and the turn whose tool step the cancel cut short.
      const log = await stepLog(result.log);
      expect(log.filter((r) => !r.unfinished).map((r) => r.step)).toEqual([0, 1]);
      const unfinished = log.filter((r) => r.unfinished);
      expect(unfinished).toHaveLength(1);
      expect(unfinished[0]).toMatchObject({ step: 2, toolError: 'cancelled before its tool step finished' });
    } finally {
      held!();
      await worker.stop();
    }
  });

  it('a member without a blob store answers a request by reference as its own failure, for the router to fail over', async () => {
    const pool = `no-store-${randomUUID().slice(0, 8)}`;
    const member = await scriptedMember(suite.nc, pool, async () => {
      throw new Error('not reached');
    });
    try {
      const request = encodeWire({
        v: 1,
        id: 'by-ref-no-store',
        pool,
        messagesRef: `kv:job:${'0'.repeat(64)}`,
        params: { maxTokens: 16, temperature: 0.8, topLogprobs: 16 },
        deadline: Date.now() + 10_000,
      });
      const reply = decodeWire(
        GenerateReplyWire,
        (await suite.nc.request(subjects.member(pool, pool), request, { timeout: 5000 })).data,
        'reply',
      );
      expect(reply.ok).toBe(false);
      if (!reply.ok) {
        // Failed over, not counted against a member that serves everything else, and not taken for a prompt too long.
        expect([reply.error.code, reply.error.retryable]).toEqual(['unhealthy', true]);
        expect(reply.error.message).toMatch(/this member has no blob store/);
      }
    } finally {
      await member.stop();
    }
  });

  it('pool member answers malformed wire messages with an error and keeps serving', async () => {
    const subject = subjects.member('default', 'sim-a');
    const byRef = (messagesRef: string) =>
      encodeWire({
        v: 1,
        id: `by-ref-${messagesRef.slice(-8)}`,
        pool: 'default',
        messagesRef,
        params: { maxTokens: 16, temperature: 0.8, topLogprobs: 16 },
        deadline: Date.now() + 10_000,
      });
    const namespace = `garbage-${randomUUID().slice(0, 8)}`;
    const blobs = new BlobStore(suite.nc);
    const notMessages = await blobs.put(namespace, { role: 'user' });
    const garbage = [
      new Uint8Array([0xc1, 0xff, 0x00, 0x13]),
      encodeWire({ v: 1, id: 42, messages: 'nope' }),
      encodeWire('hello'),
      byRef('../../etc/passwd'),
      // Gone for every member alike: refused, not failed over to the rest of the pool.
      byRef(`kv:${namespace}:${'0'.repeat(64)}`),
      byRef(notMessages),
    ];
    for (const g of garbage) {
      const reply = decodeWire(
        GenerateReplyWire,
        (await suite.nc.request(subject, g, { timeout: 5000 })).data,
        'reply',
      );
      expect(reply.ok).toBe(false);
      if (!reply.ok) expect([reply.error.code, reply.error.retryable]).toEqual(['bad_request', false]);
    }
    await blobs.deleteNamespace(namespace);
    blobs.close();
    const ok = encodeWire({
      v: 1,
      id: 'after-garbage',
      pool: 'default',
      messages: [{ role: 'user', content: 'Who founded the Varnholt Institute?' }],
      params: { maxTokens: 256, temperature: 0.8, topLogprobs: 16, seed: 1 },
      deadline: Date.now() + 10_000,
    });
    const reply = decodeWire(
      GenerateReplyWire,
      (await suite.nc.request(subject, ok, { timeout: 10_000 })).data,
      'reply',
    );
    expect(reply.ok).toBe(true);
    if (reply.ok) expect(reply.generation.entropies.length).toBeGreaterThan(0);
  });
});
