// Every tool failure becomes an observation naming the problem, whatever the tool threw.

import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { ToolRegistry } from '../../tools/registry.js';

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

  it('turns a thrown non-Error (undefined, null, a string) into an observation, not a failed step', async () => {
    for (const [value, text] of [
      [undefined, 'undefined'],
      [null, 'null'],
      ['rate limited', 'rate limited'],
      [new Error('boom'), 'boom'],
    ] as const) {
      const out = await throwing(value).run({ name: 'flaky', arguments: {} }, {} as never);
      expect(out.error).toBe(`Error: tool 'flaky' failed: ${text}`);
      expect(out.observation).toBe(out.error);
    }
  });
});
