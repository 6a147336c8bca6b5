import { JsonPayloadConverter } from '@temporalio/common';
import { describe, expect, it } from 'vitest';
import { MSGPACK_ENCODING, payloadConverter } from '../../common/payload-converter.cjs';
import { decodeWire, encodeWire, GenerateRequestWire, WireDecodeError } from '../../inference/wire.js';

describe('msgpack payload converter', () => {
  it('round-trips the values Muse puts in Temporal history', () => {
    const value = {
      prediction: 'Lisbon',
      termination: 'answer',
      steps: 7,
      regions: { think_ppl: 1.25, tool_call_ppl: null, all_ppl: 2.5 },
      entropies: new Float32Array([0, 0.5, 2.75]),
      refs: [`kv:job:${'a'.repeat(64)}`],
      nested: [{ big: 2 ** 40, neg: -3, flag: true }],
      empty: '',
    };
    const payload = payloadConverter.toPayload(value)!;
    expect(new TextDecoder().decode(payload.metadata!.encoding!)).toBe(MSGPACK_ENCODING);
    const back = payloadConverter.fromPayload<typeof value>(payload);
    expect(back).toEqual(value);
    expect(back.entropies).toBeInstanceOf(Float32Array);
  });

  it('reads JSON inputs other tools send (temporal workflow start --input, the Web UI), and writes msgpack', () => {
    const fromCli = new JsonPayloadConverter().toPayload({ question: 'Which city?', maxTurns: 5 })!;
    expect(payloadConverter.fromPayload(fromCli)).toEqual({ question: 'Which city?', maxTurns: 5 });
    const written = payloadConverter.toPayload({ question: 'Which city?' })!;
    expect(new TextDecoder().decode(written.metadata!.encoding!)).toBe(MSGPACK_ENCODING);
  });

  it('keeps undefined and binary values on their own converters', () => {
    expect(payloadConverter.fromPayload(payloadConverter.toPayload(undefined)!)).toBeUndefined();
    const bytes = new Uint8Array([1, 2, 3]);
    const p = payloadConverter.toPayload(bytes)!;
    expect(new TextDecoder().decode(p.metadata!.encoding!)).toBe('binary/plain');
    expect(payloadConverter.fromPayload(p)).toEqual(bytes);
  });

  it('is smaller than JSON for a typical step result', () => {
    const step = {
      status: 'turn',
      turnRef: `kv:j:${'f'.repeat(64)}`,
      regions: { think_ppl: 1.1, tool_call_ppl: 1.9, all_ppl: 1.4 },
      usage: { promptTokens: 1200, cachedPromptTokens: 1100, completionTokens: 80 },
    };
    expect(payloadConverter.toPayload(step)!.data!.length).toBeLessThan(JSON.stringify(step).length);
  });
});

describe('wire decoding', () => {
  it('names the problem in malformed messages', () => {
    expect(() => decodeWire(GenerateRequestWire, new Uint8Array([0xc1]), 'generate request')).toThrow(
      WireDecodeError,
    );
    expect(() =>
      decodeWire(
        GenerateRequestWire,
        encodeWire({ v: 1, id: 'x', pool: 'p', params: {}, deadline: 1 }),
        'generate request',
      ),
    ).toThrow(/params\.maxTokens/);
    expect(() =>
      decodeWire(
        GenerateRequestWire,
        encodeWire({
          v: 1,
          id: 'x',
          pool: 'p',
          params: { maxTokens: 1, temperature: 0, topLogprobs: 1 },
          deadline: 1,
        }),
        'generate request',
      ),
    ).toThrow(/exactly one of messages or messagesRef/);
    const request = (fields: object) =>
      encodeWire({
        v: 1,
        id: 'x',
        pool: 'p',
        messages: [{ role: 'user', content: 'q' }],
        params: { maxTokens: 1, temperature: 0, topLogprobs: 1 },
        deadline: 1,
        ...fields,
      });
    // A pool name is a subject token: '*' would name every pool's subjects.
    expect(() => decodeWire(GenerateRequestWire, request({ pool: '*' }), 'generate request')).toThrow(/pool/);
    expect(() =>
      decodeWire(
        GenerateRequestWire,
        request({ messages: undefined, messagesRef: 'kv:../x' }),
        'generate request',
      ),
    ).toThrow(/messagesRef: not a content reference/);
  });

  it('names the first few problems of a message with thousands, so the error reply fits in a NATS message', () => {
    const many = encodeWire({
      v: 1,
      id: 'x',
      pool: 'p',
      messages: Array.from({ length: 20_000 }, (_, i) => i),
      params: { maxTokens: 1, temperature: 0, topLogprobs: 1 },
      deadline: 1,
    });
    const err = (() => {
      try {
        decodeWire(GenerateRequestWire, many, 'generate request');
      } catch (e) {
        return e as Error;
      }
    })();
    expect(err).toBeInstanceOf(WireDecodeError);
    expect(err!.message).toMatch(/^generate request: messages\.0: .*; and \d+ more$/);
    expect(err!.message.length).toBeLessThan(2000);
  });
});
