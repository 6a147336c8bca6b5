// Every tool failure becomes an observation naming the problem, whatever the tool threw.

import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { ToolRegistry } from '../../tools/registry.js';
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

  it('tells the model what a search query must be', async () => {
    const tools = new ToolRegistry(simWebTools());
    const ctx = { question: 'Which city?' } as never;
    const missing = await tools.run({ name: 'search', arguments: {} }, ctx);
    expect(missing.error).toMatch(/query: required/);
    const tooMany = await tools.run({ name: 'search', arguments: { query: Array(11).fill('q') } }, ctx);
    expect(tooMany.error).toMatch(/query: must be a non-empty string or a list of 1 to 10 non-empty strings/);
  });

  it('cuts the text of a huge thrown object', async () => {
    const out = await throwing({ rows: 'x'.repeat(100_000) }).run(
      { name: 'flaky', arguments: {} },
      {} as never,
    );
    expect(out.error!.length).toBeLessThan(2100);
  });
});
