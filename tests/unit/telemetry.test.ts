import { PassThrough } from 'node:stream';
import { SpanStatusCode } from '@opentelemetry/api';
import { BasicTracerProvider, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { describe, expect, it } from 'vitest';
import { JsonLinesSpanExporter } from '../../common/telemetry.js';

describe('JSON lines span export', () => {
  it("writes a failed span's status and recorded exception, so it does not read as a success", async () => {
    const stream = new PassThrough();
    let text = '';
    stream.on('data', (d: Buffer) => {
      text += d.toString();
    });
    const provider = new BasicTracerProvider();
    provider.addSpanProcessor(new SimpleSpanProcessor(new JsonLinesSpanExporter({ stream })));
    const tracer = provider.getTracer('test');
    const failed = tracer.startSpan('pool.request');
    failed.recordException(new Error('member m1 timed out'));
    failed.setStatus({ code: SpanStatusCode.ERROR, message: 'member m1 timed out' });
    failed.end();
    tracer.startSpan('pool.generate').end();
    await provider.forceFlush();
    const [bad, good] = text
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(bad).toMatchObject({
      name: 'pool.request',
      kind: 'INTERNAL',
      status: { code: 'ERROR', message: 'member m1 timed out' },
      events: [{ name: 'exception', attributes: { 'exception.message': 'member m1 timed out' } }],
    });
    expect(good).toMatchObject({ name: 'pool.generate', status: { code: 'UNSET' } });
    expect(good.events).toBeUndefined();
    await provider.shutdown();
  });
});
