// The content store on the suite's NATS server: what a reference reads as in the process that wrote it, and where
// a value goes when the server's max_payload is below the store's KV limit.
import { randomUUID } from 'node:crypto';
import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ContextStore } from '../../activities/content.js';
import { BlobStore } from '../../common/blob-store.js';
import { natsFor, testConfig, withMaxPayload } from '../helpers/stack.js';

let nc: NatsConnection;
const stores: BlobStore[] = [];

beforeAll(async () => {
  nc = await natsFor(testConfig());
});

afterAll(async () => {
  // Deleted whether or not a test got to it: these namespaces' buckets have no TTL.
  const cleaner = store();
  try {
    await Promise.all(namespaces.map((ns) => cleaner.deleteNamespace(ns)));
  } finally {
    for (const s of stores) s.close();
    await nc.drain();
  }
});

function store(conn: NatsConnection = nc): BlobStore {
  const s = new BlobStore(conn);
  stores.push(s);
  return s;
}

const namespaces: string[] = [];
const namespace = () => {
  const ns = `content-${randomUUID().slice(0, 8)}`;
  namespaces.push(ns);
  return ns;
};

describe('content store', () => {
  it('a reference reads as what was stored, in the writing process too, whatever the caller does with its value after', async () => {
    const writer = store();
    const ns = namespace();
    const log = { records: [{ step: 1, text: 'first turn' }], note: undefined };
    const ref = await writer.put(ns, log);
    log.records.push({ step: 2, text: 'written after the put' });

    const elsewhere = await store().get(ref);
    expect(elsewhere).toEqual({ records: [{ step: 1, text: 'first turn' }] });
    expect(await writer.get(ref)).toEqual(elsewhere);
  });

  it("keeps a value out of the KV bucket when the server's max_payload is below the KV limit", async () => {
    // The server takes 64 KiB per message (as this connection sees it); the store's KV limit is 256 KiB.
    const small = store(withMaxPayload(nc, 64 * 1024));
    const ns = namespace();
    const page = 'a fetched page '.repeat(6_000); // ~90 KB
    const ref = await small.put(ns, page);
    expect(ref.startsWith('obj:')).toBe(true);
    expect(await store().get(ref)).toBe(page);
    expect((await small.put(ns, 'a short turn')).startsWith('kv:')).toBe(true);
  });

  it('a context stored after a deletion this worker did not hear of points at texts that are there', async () => {
    const ns = namespace();
    const contexts = new ContextStore(store());
    const state = {
      question: 'Which river?',
      steps: [{ turn: 'search it', observation: 'a page' }],
      round: 1,
    };
    await contexts.putContext(ns, 'react', state);
    // Deleted behind its back: no notice reaches it (as when it was cut off from NATS at the time).
    const jsm = await jetstreamManager(nc);
    await jsm.streams.delete(`KV_muse-${ns}`);
    const next = { ...state, steps: [...state.steps, { turn: 'answer it' }], round: 2 };
    const ref = await contexts.putContext(ns, 'react', next);
    expect((await new ContextStore(store()).getContext(ref)).state).toEqual(next);
  });

  it('after a reconnect, texts are written again: a deletion sent meanwhile never arrives, and another worker may have made the bucket anew', async () => {
    const ns = namespace();
    const conn = await natsFor(testConfig());
    try {
      const blobs = store(conn);
      const contexts = new ContextStore(blobs);
      const state = {
        question: 'Which river?',
        steps: [{ turn: 'search it', observation: 'a page' }],
        round: 1,
      };
      await contexts.putContext(ns, 'react', state);
      // Deleted without a notice reaching this worker, then made anew by another worker's write.
      await (await jetstreamManager(nc)).streams.delete(`KV_muse-${ns}`);
      await store().put(ns, 'another worker wrote here');
      const before = blobs.generation(ns);
      await conn.reconnect();
      await expect.poll(() => blobs.generation(ns), { timeout: 10_000 }).toBeGreaterThan(before);
      const next = { ...state, steps: [...state.steps, { turn: 'answer it' }], round: 2 };
      const ref = await contexts.putContext(ns, 'react', next);
      expect((await new ContextStore(store()).getContext(ref)).state).toEqual(next);
    } finally {
      await conn.close();
    }
  });

  it('keeps bucket handles for its most recently used namespaces only, and opens a closed one again when it is used', async () => {
    // No value cache: every read goes to the buckets.
    const blobs = new BlobStore(nc, { maxOpenNamespaces: 2, cacheBytes: 0 });
    stores.push(blobs);
    const [a, b, c] = [namespace(), namespace(), namespace()];
    const turn = await blobs.put(a, 'a turn of the first job');
    const page = await blobs.put(a, 'a long page '.repeat(30_000));
    expect(page.startsWith('obj:')).toBe(true);
    await blobs.put(b, 'a turn of the second job');
    await blobs.put(c, 'a turn of the third job');
    expect(blobs.openNamespaces).toBe(2);
    expect(await blobs.get(turn)).toBe('a turn of the first job');
    expect(await blobs.get(page)).toBe('a long page '.repeat(30_000));
    expect(await blobs.put(a, 'a turn of the first job')).toBe(turn);
    expect(blobs.openNamespaces).toBe(2);
  });

  it('after a reconnect, a namespace whose handles were closed for the limit starts a new generation too', async () => {
    const conn = await natsFor(testConfig());
    try {
      const blobs = new BlobStore(conn, { maxOpenNamespaces: 1 });
      stores.push(blobs);
      const [a, b] = [namespace(), namespace()];
      await blobs.put(a, 'a turn');
      await blobs.put(b, 'another job');
      expect(blobs.openNamespaces).toBe(1);
      const before = blobs.generation(a);
      await conn.reconnect();
      await expect.poll(() => blobs.generation(a), { timeout: 10_000 }).toBeGreaterThan(before);
    } finally {
      await conn.close();
    }
  });

  it("hands out a reference again only while the namespace's bucket surely keeps it, whatever this process's TTL", async () => {
    const ns = namespace();
    const maker = new BlobStore(nc, { ttlMs: 10_000 });
    // A worker deployed since, without a TTL: before it opens the bucket it can only go by its own.
    const later = new BlobStore(nc, { ttlMs: 0 });
    stores.push(maker, later);
    await maker.put(ns, 'a turn, in a bucket made with a 10 s TTL');
    expect(later.freshForMs(ns)).toBe(Number.POSITIVE_INFINITY);
    await later.put(ns, 'another turn');
    expect(later.freshForMs(ns)).toBe(5_000);
    // Its Object Store bucket, which it makes itself without a TTL, does not lengthen the namespace's.
    expect((await later.put(ns, 'a long page '.repeat(30_000))).startsWith('obj:')).toBe(true);
    expect(later.freshForMs(ns)).toBe(5_000);
  });
});
