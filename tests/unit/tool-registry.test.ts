// Every tool failure becomes an observation naming the problem, whatever the tool threw.

import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { packValue, unpackValue } from '../../common/msgpack.js';
import { MAX_OBS_BYTES, simVisit } from '../../sim/tools.js';
import { MAX_OBSERVATION_CHARS, ToolRegistry } from '../../tools/registry.js';
import { simWebTools } from '../../tools/sim-web.js';

describe('ToolRegistry', () => {
  const throwing = (value: unknown) =>
    new ToolRegistry([
      {
        name: 'flaky',
        description: 'throws',
        args: z.object({}),
        run: async () => {
          throw value;
        },
      } as never,
    ]);

  const looping = Object.assign(new Error('retry me'), { cause: undefined as unknown });
  looping.cause = looping;

  it('turns a thrown non-Error (undefined, null, a string, a plain or prototype-less object) into an observation, not a failed step', async () => {
    for (const [value, text] of [
      [undefined, 'undefined'],
      [null, 'null'],
      ['rate limited', 'rate limited'],
      [new Error('boom'), 'boom'],
      [
        new Error('fetch failed', { cause: new Error('connect ECONNREFUSED') }),
        'fetch failed: connect ECONNREFUSED',
      ],
      [{ code: 'E_QUOTA', retryAfter: 30 }, '{"code":"E_QUOTA","retryAfter":30}'],
      [Object.assign(Object.create(null), { reason: 'no prototype' }), '{"reason":"no prototype"}'],
      [looping, 'retry me'],
    ] as const) {
      const out = await throwing(value).run({ name: 'flaky', arguments: {} }, {} as never);
      expect(out.error).toBe(`Error: tool 'flaky' failed: ${text}`);
      expect(out.observation).toBe(out.error);
    }
  });

  it('turns an answer that is not text (parsed JSON, nothing) into an observation naming it, not a failed step', async () => {
    for (const [value, kind] of [
      [null, 'null'],
      [undefined, 'undefined'],
      [{ results: [] }, 'object'],
      [42, 'number'],
    ] as const) {
      const registry = new ToolRegistry([
        {
          name: 'json',
          description: 'answers parsed JSON',
          args: z.object({}),
          run: async () => value,
        } as never,
      ]);
      const out = await registry.run({ name: 'json', arguments: {} }, {} as never);
      expect(out.error).toBe(`Error: tool 'json' answered with ${kind}, not text.`);
      expect(out.observation).toBe(out.error);
    }
  });

  /** A tool that never answers and ignores its signal, as a hung fetch without a timeout would. */
  const hung = (timeoutMs?: number) => {
    let seen: { signal?: AbortSignal; deadline?: number } | undefined;
    const registry = new ToolRegistry([
      {
        name: 'hung',
        description: 'never answers',
        args: z.object({}),
        ...(timeoutMs !== undefined ? { timeoutMs } : {}),
        run: (_args: unknown, ctx: { signal?: AbortSignal; deadline?: number }) => {
          seen = ctx;
          return new Promise<string>(() => {});
        },
      } as never,
    ]);
    return { registry, signal: () => seen?.signal, deadline: () => seen?.deadline };
  };

  it('gives up on a tool at its deadline and tells the model, instead of holding the step past its attempt', async () => {
    const { registry, signal } = hung();
    const t0 = Date.now();
    const out = await registry.run(
      { name: 'hung', arguments: {} },
      { question: 'q', deadline: Date.now() + 200 },
    );
    expect(Date.now() - t0).toBeLessThan(5_000);
    expect(out.error).toMatch(/^Error: tool 'hung' did not answer within \d+ s\.$/);
    expect(out.observation).toBe(out.error);
    // The tool was told too, so one that listens stops its own work.
    expect(signal()?.aborted).toBe(true);
  });

  it("gives up on a tool at its own time limit, well before the step's deadline", async () => {
    const { registry, deadline } = hung(50);
    const started = Date.now();
    const out = await registry.run(
      { name: 'hung', arguments: {} },
      { question: 'q', deadline: started + 60_000 },
    );
    expect(out.error).toMatch(/^Error: tool 'hung' did not answer within \d+ s\.$/);
    expect(Date.now() - started).toBeLessThan(5_000);
    // The tool is told the nearer of the two.
    expect(deadline()).toBeLessThanOrEqual(started + 1_000);
  });

  it('does not start a tool whose step is already cancelled or out of time, and waits a deadline weeks away', async () => {
    let runs = 0;
    const counting = new ToolRegistry([
      {
        name: 'count',
        description: 'counts its runs',
        args: z.object({}),
        run: async () => `run ${++runs}`,
      } as never,
    ]);
    const call = { name: 'count', arguments: {} };
    // Not an observation saying it did not answer (it never ran): the step fails, to be retried with fresh time.
    await expect(counting.run(call, { question: 'q', deadline: Date.now() - 1 })).rejects.toThrow(
      "tool 'count' was not started: its step had no time left",
    );
    await expect(
      counting.run(call, { question: 'q', signal: AbortSignal.abort(new Error('cancelled')) }),
    ).rejects.toThrow('cancelled');
    expect(runs).toBe(0);
    // Past what a timer holds (~24.8 days): kept to that, not fired at once.
    const far = await counting.run(call, { question: 'q', deadline: Date.now() + 40 * 24 * 3_600_000 });
    expect(far).toEqual({ observation: 'run 1' });
  });

  it('stops waiting for a tool when the step is cancelled, with the cancellation, not an observation', async () => {
    const { registry } = hung();
    const step = new AbortController();
    const run = registry.run(
      { name: 'hung', arguments: {} },
      { question: 'q', signal: step.signal, deadline: Date.now() + 60_000 },
    );
    setTimeout(() => step.abort(new Error('activity cancelled')), 50);
    await expect(run).rejects.toThrow('activity cancelled');
  });

  it('tells the model what a search query must be', async () => {
    const tools = new ToolRegistry(simWebTools());
    const ctx = { question: 'Which city?' } as never;
    const missing = await tools.run({ name: 'search', arguments: {} }, ctx);
    expect(missing.error).toMatch(/query: required/);
    const tooMany = await tools.run({ name: 'search', arguments: { query: Array(11).fill('q') } }, ctx);
    expect(tooMany.error).toMatch(/query: must be a non-empty string or a list of 1 to 10 non-empty strings/);
  });

  it('refuses a query, URL or goal past its length limit, naming it, instead of running it', async () => {
    const tools = new ToolRegistry(simWebTools());
    const ctx = { question: 'Which city?' } as never;
    const long = 'q'.repeat(2049);
    const query = await tools.run({ name: 'search', arguments: { query: [long] } }, ctx);
    expect(query.error).toMatch(/query\.0: .*2048 characters/);
    const url = await tools.run({ name: 'visit', arguments: { url: long } }, ctx);
    expect(url.error).toMatch(/url: .*2048 characters/);
    const goal = await tools.run({ name: 'visit', arguments: { url: 'u', goal: 'g'.repeat(50_000) } }, ctx);
    expect(goal.error).toMatch(/invalid arguments for tool 'visit': goal: .*4096/);
  });

  it('cuts an observation past the limit and says how much was left out, whatever the tool returned', async () => {
    const huge = new ToolRegistry([
      {
        name: 'dump',
        description: 'a runaway page',
        args: z.object({}),
        run: async () => 'p'.repeat(3e6),
      } as never,
    ]);
    const out = await huge.run({ name: 'dump', arguments: {} }, {} as never);
    expect(out.error).toBeUndefined();
    expect(out.observation.startsWith('p'.repeat(MAX_OBSERVATION_CHARS))).toBe(true);
    expect(out.observation).toMatch(/\[… 1951424 more characters omitted\]$/);
  });

  it('gives an observation with half a surrogate pair as it will read back from the store', async () => {
    const page = new ToolRegistry([
      {
        name: 'page',
        description: 'a page whose JSON escaped half an emoji',
        args: z.object({}),
        run: async () => JSON.parse('"before \\ud83d after"') as string,
      } as never,
    ]);
    const out = await page.run({ name: 'page', arguments: {} }, {} as never);
    expect(out.observation).toBe('before \ufffd after');
    expect(unpackValue(packValue(out.observation))).toBe(out.observation);
  });

  it("pads a simulated visit's pages to 1 MiB together at most, each page keeping its facts", async () => {
    expect(simVisit('Which city? [sim:obs-bytes=100000000]', ['a'], 'g').length).toBe(MAX_OBS_BYTES);
    const visit = (urls: string[]) => simVisit('Which city? [sim:obs-bytes=524288]', urls, 'g');
    expect(Buffer.byteLength(visit(['a']))).toBe(524_288);
    const three = visit(['a', 'b', 'c']);
    expect(three.length).toBeLessThanOrEqual(MAX_OBS_BYTES + 200);
    for (const u of ['a', 'b', 'c']) expect(three).toContain(`Page not found: ${u} does not exist`);
  });

  it('describes a thrown object whose fields throw when read, as an observation', async () => {
    const hostile = {
      get message(): string {
        throw new Error('no message for you');
      },
    };
    const out = await throwing(hostile).run({ name: 'flaky', arguments: {} }, {} as never);
    expect(out.error).toMatch(/^Error: tool 'flaky' failed: /);
  });

  it('cuts the text of a huge thrown object', async () => {
    const out = await throwing({ rows: 'x'.repeat(100_000) }).run(
      { name: 'flaky', arguments: {} },
      {} as never,
    );
    expect(out.error!.length).toBeLessThan(2100);
  });
});
