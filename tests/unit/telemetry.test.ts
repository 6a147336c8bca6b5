import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { context, propagation, SpanStatusCode, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { loadConfig } from '../../common/config.js';
import {
  currentTracer,
  initTelemetry,
  JsonLinesSpanExporter,
  shutdownTelemetry,
  tracer,
} from '../../common/telemetry.js';
import { tempDir } from '../helpers/temp.js';

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

describe('process telemetry', () => {
  const dir = tempDir('muse-telemetry-');
  const fileConfig = (name: string) =>
    loadConfig({ env: {}, overrides: { telemetry: { exporter: 'file', file: join(dir, name) } } });
  const spanNames = (file: string) =>
    existsSync(file)
      ? readFileSync(file, 'utf8')
          .trim()
          .split('\n')
          .map((l) => (JSON.parse(l) as { name: string }).name)
      : [];

  afterEach(async () => {
    await shutdownTelemetry();
    trace.disable();
    propagation.disable();
    context.disable();
    vi.restoreAllMocks();
  });

  it('refuses a span file it cannot write, by name, instead of losing every span without a word', () => {
    // A directory where the file should be.
    expect(() => new JsonLinesSpanExporter({ file: dir })).toThrow(
      `telemetry.file (MUSE_TRACE_FILE): cannot write spans to ${dir}: EISDIR`,
    );
    const file = join(dir, 'nested', 'traces.jsonl');
    new JsonLinesSpanExporter({ file });
    expect(readFileSync(file, 'utf8')).toBe('');
  });

  it('a client command goes on without tracing when the span file cannot be written; a worker does not start', () => {
    const unwritable = {
      ...fileConfig('x.jsonl'),
      telemetry: { ...fileConfig('x.jsonl').telemetry, file: dir },
    };
    const said = vi.spyOn(console, 'error').mockImplementation(() => {});
    expect(initTelemetry(unwritable, 'client')).toBeUndefined();
    expect(said).toHaveBeenCalledWith(
      expect.stringMatching(
        /^telemetry: telemetry\.file \(MUSE_TRACE_FILE\): cannot write spans to .*: EISDIR.*; going on without tracing$/,
      ),
    );
    return shutdownTelemetry().then(() => {
      expect(() => initTelemetry(unwritable, 'worker')).toThrow(/cannot write spans to .*EISDIR/);
    });
  });

  it('a tracer kept across a shutdown and a new set-up writes to the new exporter', async () => {
    initTelemetry(fileConfig('first.jsonl'), 'test');
    const kept = currentTracer('kept');
    const bound = trace.getTracer('bound');
    kept.startSpan('before').end();
    bound.startSpan('bound before').end();
    await shutdownTelemetry();
    initTelemetry(fileConfig('second.jsonl'), 'test');
    kept.startSpan('after').end();
    kept.startActiveSpan('active after', (span) => span.end());
    bound.startSpan('bound after').end();
    expect(spanNames(join(dir, 'first.jsonl'))).toEqual(['before', 'bound before']);
    // What currentTracer stands in for: a tracer the API handed out earlier stays bound to the old provider.
    expect(spanNames(join(dir, 'second.jsonl'))).toEqual(['after', 'active after']);
  });

  it('leaves OpenTelemetry that was set up before it in place, says so, and does not switch it off', async () => {
    const host = new InMemorySpanExporter();
    const hostProvider = new BasicTracerProvider();
    hostProvider.addSpanProcessor(new SimpleSpanProcessor(host));
    trace.setGlobalTracerProvider(hostProvider);
    propagation.setGlobalPropagator(new W3CTraceContextPropagator());
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => {});

    const exporter = initTelemetry(fileConfig('host.jsonl'), 'test');
    expect(String(warn.mock.calls[0]?.[0])).toMatch(
      /set up in this process before Muse.*only workflow spans/,
    );
    // What it returns, the worker's sink for workflow spans, still writes the configured file.
    const made = new InMemorySpanExporter();
    const maker = new BasicTracerProvider();
    maker.addSpanProcessor(new SimpleSpanProcessor(made));
    maker.getTracer('workflow').startSpan('workflow span').end();
    await new Promise<void>((done) => exporter!.export(made.getFinishedSpans(), () => done()));
    await maker.shutdown();
    tracer().startSpan('muse span').end();
    await shutdownTelemetry();
    trace.getTracer('host').startSpan('host span after').end();

    expect(host.getFinishedSpans().map((s) => s.name)).toEqual(['muse span', 'host span after']);
    expect(spanNames(join(dir, 'host.jsonl'))).toEqual(['workflow span']);
    expect(propagation.fields()).toEqual(['traceparent', 'tracestate']);
    await hostProvider.shutdown();
  });

  it('removes what it set up, so a later set-up takes over', async () => {
    initTelemetry(fileConfig('own.jsonl'), 'test');
    expect(propagation.fields()).toEqual(['traceparent', 'tracestate']);
    await shutdownTelemetry();
    expect(propagation.fields()).toEqual([]);
    const other = new BasicTracerProvider();
    expect(trace.setGlobalTracerProvider(other)).toBe(true);
    await other.shutdown();
  });
});
