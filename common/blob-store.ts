// Content-addressed storage on NATS JetStream. Temporal history and NATS requests carry references;
// the content itself (turns, observations, contexts, reports, large prompts) lives here, stored once
// per job however many trajectories share it (branches share their whole prefix).
//
// One namespace per job: small blobs in a KV bucket (one publish per put), large ones in an Object Store
// bucket (chunked, so a blob may exceed the NATS max payload). The namespace's lifetime is the job's:
// a bucket TTL when set, and `deleteNamespace` when the job's content is no longer wanted.
import { createHash, randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { type JetStreamManager, jetstreamManager, type StoredMsg } from '@nats-io/jetstream';
import { type KV, type KvEntry, Kvm } from '@nats-io/kv';
import type { NatsConnection, Subscription } from '@nats-io/nats-core';
import { type ObjectInfo, type ObjectStore, Objm } from '@nats-io/obj';
import { packValue, unpackValue } from './msgpack.js';
import { watchStatus, withinMaxPayload } from './nats.js';

/** Room the subject and headers of a KV publish take beside the value in one NATS message. */
const KV_PUBLISH_ROOM_BYTES = 1024;

/** A read's answer when the namespace's bucket is gone (see onBucket): nothing to ask the leader about either. */
const NO_BUCKET = Symbol('no bucket');

/** What a read needs of a KV entry, whether kv.get or the stream's leader answered. */
type StoredEntry = Pick<KvEntry, 'value' | 'created'> & { operation: string };

/** `kv:<namespace>:<sha256>` or `obj:<namespace>:<sha256>`. */
export type BlobRef = string;

export class BlobNotFoundError extends Error {
  constructor(readonly ref: BlobRef) {
    super(`content reference ${ref} cannot be resolved: the blob is missing (expired or deleted?)`);
    this.name = 'BlobNotFoundError';
  }
}

/**
 * Where `deleteNamespace` announces a deleted namespace (the payload), so every process drops what it holds of it:
 * bucket handles that now point at nothing, decoded values, references it would hand out again without a write.
 */
export const CONTENT_DELETED_SUBJECT = 'muse.content.deleted';

export interface BlobStoreOptions {
  /** Blobs above this size go to the Object Store (and those above the server's max payload, whatever this says). */
  inlineLimitBytes?: number;
  /** Lifetime of a namespace's content in ms (0 = until deleted). */
  ttlMs?: number;
  /** In-process cache of decoded blobs, in bytes. */
  cacheBytes?: number;
  /** JetStream replicas of the buckets this store makes (servers of a cluster holding each namespace's content). */
  replicas?: number;
  /**
   * Namespaces whose bucket handles are kept open (least recently used closed first; reopened when used again). A
   * worker that lives through many jobs would otherwise keep a handle for every job it ever served (about 3.4 KB of heap each).
   */
  maxOpenNamespaces?: number;
}

const NAMESPACE_RE = /^[A-Za-z0-9_-]{1,64}$/;
const HASHED_SUFFIX = /_[0-9a-f]{12}$/;

/** Turns a job id into a bucket-safe namespace (deterministic, collision-resistant). */
export function namespaceFor(jobId: string): string {
  const clean = jobId.replace(/[^A-Za-z0-9_-]/g, '_');
  // A clean id of a hashed name's shape is hashed too: kept as it is, it could name another job's namespace (and
  // deleting one job's content would delete the other's).
  if (clean === jobId && clean.length >= 1 && clean.length <= 48 && !HASHED_SUFFIX.test(jobId)) return clean;
  return `${clean.slice(0, 32)}_${createHash('sha256').update(jobId).digest('hex').slice(0, 12)}`;
}

/** The shape of a BlobRef: where it is kept, the job's namespace, the content's sha256. */
export const BLOB_REF_RE = /^(kv|obj):([A-Za-z0-9_-]+):([0-9a-f]{64})$/;

export function parseBlobRef(ref: BlobRef): { kind: 'kv' | 'obj'; namespace: string; key: string } {
  const m = BLOB_REF_RE.exec(ref);
  if (!m) throw new TypeError(`malformed content reference: ${JSON.stringify(ref).slice(0, 120)}`);
  return { kind: m[1] as 'kv' | 'obj', namespace: m[2]!, key: m[3]! };
}

/** The longest reference a put into the namespace can return: for sizing a message before anything is stored. */
export function longestBlobRef(namespace: string): BlobRef {
  return `obj:${namespace}:${'0'.repeat(64)}`;
}

export class BlobStore {
  private readonly kvm: Kvm;
  private readonly objm: Objm;
  private readonly kvs = new Map<string, Promise<KV>>();
  private readonly objs = new Map<string, Promise<ObjectStore>>();
  /** Namespaces with open handles, least recently used first. */
  private readonly open = new Map<string, true>();
  private readonly maxOpenNamespaces: number;
  /** Writes under way, so concurrent puts of one value share a single write. */
  private readonly writing = new Map<BlobRef, Promise<number>>();
  /** Decoded values, with when the store last wrote them (ms; -Infinity when not known). */
  private readonly cache = new Map<BlobRef, { value: unknown; size: number; writtenAt: number }>();
  private cacheSize = 0;
  /** The TTL (ms, 0: none) of each namespace's buckets as this process found them; see freshForMs. */
  private readonly bucketTtls = new Map<string, number>();
  /** Bumped each time a namespace's state is dropped (deleted here or elsewhere); see generation(). */
  private readonly generations = new Map<string, number>();
  /** Bumped when every namespace's state is dropped at once (a reconnect): namespaces closed for the limit too. */
  private epoch = 0;
  private readonly inlineLimit: number;
  private readonly ttlMs: number;
  private readonly cacheBytes: number;
  private readonly replicas: number;
  private readonly deletions: Subscription;
  private readonly stopWatching: () => void;
  private jsm?: Promise<JetStreamManager>;

  constructor(
    private readonly nc: NatsConnection,
    opts: BlobStoreOptions = {},
  ) {
    this.kvm = new Kvm(nc);
    this.objm = new Objm(nc);
    this.inlineLimit = opts.inlineLimitBytes ?? 256 * 1024;
    this.ttlMs = opts.ttlMs ?? 0;
    this.cacheBytes = opts.cacheBytes ?? 64 * 1024 * 1024;
    this.replicas = opts.replicas ?? 1;
    this.maxOpenNamespaces = Math.max(1, opts.maxOpenNamespaces ?? 1024);
    this.deletions = nc.subscribe(CONTENT_DELETED_SUBJECT, {
      callback: (err, msg) => {
        if (!err && NAMESPACE_RE.test(msg.string())) this.dropNamespace(msg.string());
      },
    });
    // A deletion notice is sent once: one sent while this process was cut off never arrives. Whatever it knew of
    // its namespaces may be stale after a reconnect, and is taken for so (texts are written again once).
    this.stopWatching = watchStatus(nc, (type) => {
      if (type === 'reconnect') this.dropAll();
    });
  }

  /**
   * Makes and deletes a bucket with this store's settings. Settings the NATS server refuses (more replicas than the
   * cluster has servers, a TTL out of JetStream's range, JetStream off) then stop a worker at start, named, instead
   * of failing every step of every trajectory later with a retryable error. So does a cluster that cannot place the
   * bucket now (a node down, no JetStream leader): a worker is restarted until it can, while those already running
   * go on serving the jobs whose buckets exist.
   */
  async checkSettings(): Promise<void> {
    const bucket = `museprobe-${randomUUID()}`;
    try {
      await this.kvm.create(bucket, { history: 1, ttl: this.ttlMs, replicas: this.replicas });
    } catch (err) {
      throw new Error(
        `the NATS server at ${this.nc.getServer()} refuses the content store's settings (store.replicas ${this.replicas}, ` +
          `MUSE_STORE_REPLICAS; store.ttlMs ${this.ttlMs}, MUSE_STORE_TTL_MS): ${(err as Error).message}`,
      );
    }
    // Tried a few times: an empty stream left behind (a leader election under way) would stay for good, one per
    // worker start, as a TTL only ages messages.
    const jsm = await this.manager();
    for (let attempt = 0; attempt < 3; attempt++) {
      const gone = await jsm.streams.delete(`KV_${bucket}`).then(
        () => true,
        (err) => isStreamNotFound(err),
      );
      if (gone) return;
      await sleep(250 * (attempt + 1));
    }
  }

  /** Stops listening for deletions, for a store on a connection that outlives it (the connection is not closed). */
  close(): void {
    this.deletions.unsubscribe();
    this.stopWatching();
  }

  /**
   * Changes whenever the namespace was deleted as far as this process knows: a reference to its content remembered
   * under an earlier generation may point at nothing and must be written again before it is handed out.
   */
  generation(namespace: string): number {
    return this.epoch + (this.generations.get(namespace) ?? 0);
  }

  /**
   * Stores any msgpack-able value; equal values get equal references, and concurrent puts of one value share a
   * single write. A later put writes again: the entry may have expired (store TTL) or been deleted meanwhile, and a
   * reference handed out must resolve.
   */
  async put(namespace: string, value: unknown): Promise<BlobRef> {
    const bytes = packValue(value);
    const key = createHash('sha256').update(bytes).digest('hex');
    const kind = bytes.length > this.kvLimit() ? 'obj' : 'kv';
    const ref = `${kind}:${namespace}:${key}`;
    // Shared by puts of one generation only: a write under way when the namespace was deleted may have landed
    // before the delete, and a put made after it must write again.
    const writing = `${ref}@${this.generation(namespace)}`;
    let write = this.writing.get(writing);
    if (!write) {
      write = this.write(kind, namespace, key, bytes).finally(() => this.writing.delete(writing));
      this.writing.set(writing, write);
    }
    const generation = this.generation(namespace);
    const writtenAt = await write;
    // What the reference resolves to, not the caller's object: a caller changing it after the put would otherwise
    // change what the reference reads as in this process alone, and values msgpack does not keep as they are
    // (undefined fields, class instances) would read differently here than in every other process. Not when the
    // namespace was deleted meanwhile: the write may have landed before the delete.
    if (this.cacheable(bytes.length) && this.generation(namespace) === generation)
      this.remember(ref, unpackValue(bytes), bytes.length, writtenAt);
    return ref;
  }

  /**
   * Largest value kept in the KV bucket: the configured limit, or less where the server's max_payload is lower (a
   * KV put is one message, which the server would refuse on every retry).
   */
  private kvLimit(): number {
    return withinMaxPayload(this.nc, this.inlineLimit, KV_PUBLISH_ROOM_BYTES);
  }

  /**
   * How long a reference to the namespace's content stays safe to hand out again without writing its value again:
   * half the TTL (an entry lives for the TTL from its last write), forever without one. The TTL is the namespace's
   * bucket's once this process has opened it (a bucket keeps the TTL of the process that made it: workers deployed
   * since with a longer one would hand out references the bucket expires), this process's own before.
   */
  freshForMs(namespace: string): number {
    const ttl = this.bucketTtls.get(namespace) ?? this.ttlMs;
    return ttl > 0 ? ttl / 2 : Number.POSITIVE_INFINITY;
  }

  /** The TTL a namespace's bucket was made with (the shorter of its two when they differ). */
  private noteBucketTtl(namespace: string, ttlMs: number): void {
    const known = this.bucketTtls.get(namespace);
    const shorter = (a: number, b: number) => (a === 0 ? b : b === 0 ? a : Math.min(a, b));
    this.bucketTtls.set(namespace, known === undefined ? ttlMs : shorter(known, ttlMs));
  }

  /** When the store last wrote the value, as far as this process knows (see get); -Infinity when not known. */
  writtenAt(ref: BlobRef): number {
    return this.cache.get(ref)?.writtenAt ?? Number.NEGATIVE_INFINITY;
  }

  /** Writes the value (a large one only when the stored copy is missing or old); returns when the store wrote it. */
  private async write(
    kind: 'kv' | 'obj',
    namespace: string,
    key: string,
    bytes: Uint8Array,
  ): Promise<number> {
    if (kind === 'kv') {
      await this.onKv(namespace, (kv) => kv.put(key, bytes));
      return Date.now();
    }
    return this.onObj(namespace, async (os) => {
      const info = await os.info(key);
      // Large values are written once, and again when the copy there is old enough to expire soon. A missing or
      // deleted copy is always written (without a TTL nothing is "old enough", and -Infinity would pass as fresh).
      if (info && !info.deleted) {
        const storedAt = new Date(info.mtime).getTime();
        if (Date.now() - storedAt <= this.freshForMs(namespace) && (await this.chunksStored(namespace, info)))
          return storedAt;
      }
      await os.putBlob({ name: key }, bytes);
      return Date.now();
    });
  }

  /**
   * Whether every chunk an object's entry points at is stored. A put whose entry was stored but not acknowledged
   * (a timeout, a lost connection) purges its chunks and leaves the entry: trusted, it would be handed out and never
   * read.
   */
  private async chunksStored(namespace: string, info: ObjectInfo): Promise<boolean> {
    if (info.chunks === 0) return true;
    const bucket = objBucket(namespace);
    const subject = `$O.${bucket}.C.${info.nuid}`;
    const stream = await (await this.manager()).streams.info(`OBJ_${bucket}`, { subjects_filter: subject });
    return (stream.state.subjects?.[subject] ?? 0) === info.chunks;
  }

  async get<T = unknown>(ref: BlobRef): Promise<T> {
    const hit = this.cache.get(ref);
    if (hit) {
      // Re-insert to keep Map order as LRU order.
      this.cache.delete(ref);
      this.cache.set(ref, hit);
      return hit.value as T;
    }
    const { kind, namespace, key } = parseBlobRef(ref);
    // A deletion announced while the read is under way: what it returns may be gone, so it is not kept.
    const generation = this.generation(namespace);
    let bytes: Uint8Array | null = null;
    // A KV entry carries its write time; an object's would take another request, so it stays unknown.
    let writtenAt = Number.NEGATIVE_INFINITY;
    if (kind === 'kv') {
      const entry = await this.kvEntry(namespace, key);
      bytes = entry && entry.operation === 'PUT' ? entry.value : null;
      if (entry) writtenAt = entry.created.getTime();
    } else {
      bytes = await this.onObj(namespace, (os) => readObject(os, key, ref), null);
    }
    if (!bytes || bytes.length === 0) throw new BlobNotFoundError(ref);
    const value = unpackValue<T>(bytes);
    if (this.generation(namespace) === generation) this.remember(ref, value, bytes.length, writtenAt);
    return value;
  }

  async getText(ref: BlobRef): Promise<string> {
    const v = await this.get<unknown>(ref);
    if (typeof v !== 'string') throw new TypeError(`content reference ${ref} does not hold text`);
    return v;
  }

  /**
   * Named records of what a side effect produced, so a retried activity can take the result instead of doing it
   * again (a tool call that already ran). Stored in the namespace's KV bucket under `memo.<sha256(name)>`, so they
   * share the namespace's retention. Small values only.
   */
  async setMemo(namespace: string, name: string, value: unknown): Promise<void> {
    await this.onKv(namespace, (kv) => kv.put(memoKey(name), packValue(value)));
  }

  async getMemo<T = unknown>(namespace: string, name: string): Promise<T | undefined> {
    const entry = await this.kvEntry(namespace, memoKey(name));
    return entry && entry.operation === 'PUT' && entry.value.length > 0
      ? unpackValue<T>(entry.value)
      : undefined;
  }

  /**
   * A KV entry as kv.get reads it, and read again from the stream's leader when that finds none. kv.get asks any
   * replica (a direct get), and one that has not yet received a write the others acknowledged answers that there is
   * no such entry: on a replicated store a step would find the turn that the step before it wrote missing, and fail
   * for good, or run a recorded tool call again.
   */
  private async kvEntry(namespace: string, key: string): Promise<StoredEntry | null> {
    const entry = await this.onKv<KvEntry | null | typeof NO_BUCKET>(
      namespace,
      (kv) => kv.get(key),
      NO_BUCKET,
    );
    // Whatever this process's own replicas setting: it may read buckets that another process made replicated.
    if (entry === NO_BUCKET) return null;
    if (entry) return entry;
    const jsm = await this.manager();
    const bucket = kvBucket(namespace);
    let sm: StoredMsg | null;
    try {
      sm = await jsm.streams.getMessage(`KV_${bucket}`, { last_by_subj: `$KV.${bucket}.${key}` });
    } catch (err) {
      if (await this.streamGone(`KV_${bucket}`, err)) return null;
      throw err;
    }
    if (!sm) return null;
    return {
      operation: sm.header?.get('KV-Operation') || 'PUT',
      value: sm.data,
      created: sm.time,
    };
  }

  /** The JetStream manager for direct stream requests, made once, without the account check a new one sends. */
  private manager(): Promise<JetStreamManager> {
    this.jsm ??= jetstreamManager(this.nc, { checkAPI: false });
    return this.jsm;
  }

  /** Deletes every blob of a namespace (a job's retention ends). Idempotent. */
  async deleteNamespace(namespace: string): Promise<{ deleted: string[] }> {
    const jsm = await this.manager();
    const deleted: string[] = [];
    try {
      for (const stream of [`KV_${kvBucket(namespace)}`, `OBJ_${objBucket(namespace)}`]) {
        try {
          await jsm.streams.delete(stream);
          deleted.push(stream);
        } catch (err) {
          if (!/not found/i.test(String(err))) throw err;
        }
      }
    } finally {
      // Announced even when the second stream's delete failed after the first went: references into the first
      // must not be handed out again.
      this.dropNamespace(namespace);
      try {
        this.nc.publish(CONTENT_DELETED_SUBJECT, namespace);
      } catch {
        // A closed connection: the delete's own outcome is what to report; other workers learn of it at reconnect.
      }
    }
    await this.nc.flush();
    return { deleted };
  }

  /** dropNamespace for every namespace at once: one pass, however many namespaces and cached values there are. */
  private dropAll(): void {
    this.kvs.clear();
    this.objs.clear();
    this.open.clear();
    this.bucketTtls.clear();
    this.cache.clear();
    this.cacheSize = 0;
    this.epoch++;
  }

  /** Forgets the namespace's bucket handles and decoded values, and starts its next generation. */
  private dropNamespace(namespace: string): void {
    this.kvs.delete(namespace);
    this.objs.delete(namespace);
    this.open.delete(namespace);
    this.bucketTtls.delete(namespace);
    for (const ref of [...this.cache.keys()]) if (parseBlobRef(ref).namespace === namespace) this.forget(ref);
    this.generations.set(namespace, (this.generations.get(namespace) ?? 0) + 1);
  }

  /**
   * Runs `op` on one of the namespace's buckets (`stream`), opened by `open`. A bucket deleted since this process
   * opened it (a deletion it did not hear of: sent while it was disconnected, or still on its way) is forgotten. A
   * write then opens it again, which makes it anew, and is retried once: without this every later put there would
   * fail for as long as the process lives. A read (`missing` given) answers `missing` instead: the content is gone,
   * and a read makes no bucket.
   */
  private async onBucket<B, T>(
    namespace: string,
    stream: string,
    open: (namespace: string) => Promise<B>,
    op: (bucket: B) => Promise<T>,
    missing?: T,
  ): Promise<T> {
    try {
      return await op(await open(namespace));
    } catch (err) {
      if (!(await this.streamGone(stream, err))) throw err;
      this.dropNamespace(namespace);
      if (missing !== undefined) return missing;
      return op(await open(namespace));
    }
  }

  /**
   * Whether `err`, from an operation on `stream`, means the stream is not there. "No responders" (which the client
   * also reports as JetStream not enabled) says only that nothing answered: no stream listens on the subject (it was
   * deleted), or the stream is there and has no leader for now (its server restarting, an election under way). The
   * server is asked which: taking the second for the first would fail a step for good over content that is only out
   * of reach for a moment, and forget every reference of the job this process holds.
   */
  private async streamGone(stream: string, err: unknown): Promise<boolean> {
    if (isStreamNotFound(err)) return true;
    if (!isNoResponders(err)) return false;
    try {
      await (await this.manager()).streams.info(stream);
      return false;
    } catch (infoErr) {
      return isStreamNotFound(infoErr);
    }
  }

  /** A read (`missing` given) binds to the bucket; a write makes it when it is not there. */
  private onKv<T>(namespace: string, op: (kv: KV) => Promise<T>, missing?: T): Promise<T> {
    const stream = `KV_${kvBucket(namespace)}`;
    return this.onBucket(namespace, stream, (ns) => this.kv(ns, missing === undefined), op, missing);
  }

  private onObj<T>(namespace: string, op: (os: ObjectStore) => Promise<T>, missing?: T): Promise<T> {
    const stream = `OBJ_${objBucket(namespace)}`;
    return this.onBucket(namespace, stream, (ns) => this.obj(ns, missing === undefined), op, missing);
  }

  /**
   * The namespace's KV bucket. Only a write makes it (with this process's TTL): a read of content that is gone (a
   * deleted job) must not bring the bucket back, with whatever TTL the reading process has (none, for a client).
   * A handle bound for a read serves later writes while the bucket lives; once it is gone, onBucket reopens for
   * the write, which makes it.
   */
  private kv(namespace: string, create: boolean): Promise<KV> {
    let p = this.kvs.get(namespace);
    if (!p) {
      assertNamespace(namespace);
      p = (
        create
          ? this.kvm.create(kvBucket(namespace), {
              history: 1,
              ttl: this.ttlMs,
              maxValueSize: -1,
              replicas: this.replicas,
            })
          : this.kvm.open(kvBucket(namespace))
      ).then(async (kv) => {
        this.noteBucketTtl(namespace, (await kv.status()).ttl);
        return kv;
      });
      const opening = p;
      // Only its own entry: the namespace may have been dropped and opened again meanwhile.
      p.catch(() => this.kvs.get(namespace) === opening && this.closed(namespace, this.kvs));
      this.kvs.set(namespace, p);
    }
    this.used(namespace);
    return p;
  }

  /** The namespace's Object Store bucket; as kv(). */
  private obj(namespace: string, create: boolean): Promise<ObjectStore> {
    let p = this.objs.get(namespace);
    if (!p) {
      assertNamespace(namespace);
      p = (
        create
          ? this.objm.create(objBucket(namespace), {
              replicas: this.replicas,
              ...(this.ttlMs ? { ttl: this.ttlMs * 1_000_000 } : {}),
            })
          : this.objm.open(objBucket(namespace))
      ).then(async (os) => {
        this.noteBucketTtl(namespace, Math.round((await os.status()).ttl / 1_000_000));
        return os;
      });
      const opening = p;
      p.catch(() => this.objs.get(namespace) === opening && this.closed(namespace, this.objs));
      this.objs.set(namespace, p);
    }
    this.used(namespace);
    return p;
  }

  /**
   * Marks the namespace most recently used, and closes the handles of the least recently used one past the limit.
   * Only the handles: what this process knows of the bucket (its TTL, its generation) and the values it read stay,
   * since the bucket is not gone, and a handle opened again binds to the same bucket.
   */
  private used(namespace: string): void {
    this.open.delete(namespace);
    this.open.set(namespace, true);
    if (this.open.size <= this.maxOpenNamespaces) return;
    const oldest = this.open.keys().next().value!;
    this.open.delete(oldest);
    this.kvs.delete(oldest);
    this.objs.delete(oldest);
  }

  /** A handle that failed to open is forgotten; the namespace no longer counts as open once it has none. */
  private closed(namespace: string, handles: Map<string, unknown>): void {
    handles.delete(namespace);
    if (!this.kvs.has(namespace) && !this.objs.has(namespace)) this.open.delete(namespace);
  }

  /** Namespaces whose bucket handles this process holds (at most maxOpenNamespaces). */
  get openNamespaces(): number {
    return this.open.size;
  }

  /** Values larger than a quarter of the cache are not kept: one would push out many smaller ones. */
  private cacheable(size: number): boolean {
    return size <= this.cacheBytes / 4;
  }

  private remember(ref: BlobRef, value: unknown, size: number, writtenAt: number): void {
    if (!this.cacheable(size)) return;
    this.forget(ref);
    this.cache.set(ref, { value, size, writtenAt });
    this.cacheSize += size;
    while (this.cacheSize > this.cacheBytes) {
      const oldest = this.cache.keys().next().value;
      if (oldest === undefined) break;
      this.forget(oldest);
    }
  }

  private forget(ref: BlobRef): void {
    const e = this.cache.get(ref);
    if (!e) return;
    this.cache.delete(ref);
    this.cacheSize -= e.size;
  }
}

/**
 * The errors that say a bucket's stream is not there: deleted under an open handle, or never made, for a read that
 * binds to it ('object store not found').
 */
function isStreamNotFound(err: unknown): boolean {
  const e = err as { name?: unknown; message?: unknown } | null;
  return (
    e?.name === 'StreamNotFoundError' ||
    /stream not found|object store not found/i.test(String(e?.message ?? ''))
  );
}

/**
 * Nothing answered a request to a bucket's stream: a KV publish or direct get finds no stream listening, which the
 * client reads as 'jetstream is not enabled' (see BlobStore.streamGone).
 */
function isNoResponders(err: unknown): boolean {
  const e = err as { name?: unknown; message?: unknown } | null;
  return (
    e?.name === 'JetStreamNotEnabled' ||
    /jetstream is not enabled|no responders/i.test(String(e?.message ?? ''))
  );
}

/** How long an object read may go without a chunk before it is given up (a read never stalls this long otherwise). */
const OBJECT_READ_IDLE_MS = 30_000;

/**
 * An object's bytes. Another process rewriting the object (a refresh before its TTL, or the same value put at once
 * from two processes) purges the chunks a read in progress was reading, and the client then waits for them forever:
 * a read that goes OBJECT_READ_IDLE_MS without a chunk is cancelled (its consumer stopped) and made again, from the
 * object's new chunks; a second stall fails naming the reference. A slow read that keeps receiving chunks goes on.
 */
export async function readObject(
  os: Pick<ObjectStore, 'get'>,
  key: string,
  ref: BlobRef,
  idleMs = OBJECT_READ_IDLE_MS,
): Promise<Uint8Array | null> {
  for (let attempt = 0; ; attempt++) {
    const r = await os.get(key);
    if (r === null) return null;
    // Rejects along with the stream when the client's consumer fails; awaited below only when the stream ended, so
    // marked handled here: unhandled, it would end the worker's process.
    r.error.catch(() => {});
    const reader = r.data.getReader();
    const chunks: Uint8Array[] = [];
    let stalled = false;
    let timer: NodeJS.Timeout | undefined;
    const idle = () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        stalled = true;
        void reader.cancel().catch(() => {});
      }, idleMs);
    };
    try {
      idle();
      for (;;) {
        const { done, value } = await reader.read();
        if (done || stalled) break;
        if (value?.length) chunks.push(value);
        idle();
      }
    } finally {
      clearTimeout(timer);
    }
    if (!stalled) {
      const err = await r.error;
      if (err) throw err;
      // A Buffer is a Uint8Array: not copied again (objects are large; one this size is never in Buffer's pool).
      return Buffer.concat(chunks);
    }
    if (attempt >= 1)
      throw new Error(`reading ${ref} stalled twice for ${idleMs} ms: its chunks are missing`);
  }
}

function memoKey(name: string): string {
  return `memo.${createHash('sha256').update(name).digest('hex')}`;
}

function kvBucket(namespace: string): string {
  return `muse-${namespace}`;
}
function objBucket(namespace: string): string {
  return `muse-${namespace}`;
}
function assertNamespace(namespace: string): void {
  if (!NAMESPACE_RE.test(namespace)) throw new TypeError(`invalid content namespace '${namespace}'`);
}
