// OpenTelemetry wiring shared by every process. One trace per trajectory: the client starts it, the
// Temporal interceptors carry it through workflow and activities, NATS headers (W3C traceparent) carry it
// to the pool member. Exporters: none, console, or a JSON-lines file (handy to inspect one run).
import { appendFileSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { MsgHdrs } from '@nats-io/nats-core';
import {
  type Context,
  context,
  propagation,
  SpanKind,
  SpanStatusCode,
  type TextMapGetter,
  type TextMapSetter,
  type Tracer,
  trace,
} from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import {
  type ExportResult,
  ExportResultCode,
  hrTimeToMilliseconds,
  W3CTraceContextPropagator,
} from '@opentelemetry/core';
import { Resource } from '@opentelemetry/resources';
import {
  BasicTracerProvider,
  type ReadableSpan,
  SimpleSpanProcessor,
  type SpanExporter,
} from '@opentelemetry/sdk-trace-base';
import type { MuseConfig } from './config.js';

/**
 * Writes finished spans as JSON lines: to a file several processes may append to, or to standard error (the
 * `console` exporter), which keeps them out of what a command prints on standard output (`muse run --json`).
 */
export class JsonLinesSpanExporter implements SpanExporter {
  private readonly write: (text: string) => void;
  /** Where the spans go, for the message of a failed write. */
  private readonly target: string;
  private failed = false;
  constructor(target: { file: string; setting?: string } | { stream: NodeJS.WritableStream }) {
    if ('stream' in target) {
      this.write = (text) => target.stream.write(text);
      this.target = 'standard error';
    } else {
      const { file } = target;
      // Checked now: a span that fails to export is only reported to OpenTelemetry's diagnostics, which say nothing
      // unless a logger is set up, so a file that cannot be written would lose every span without a word.
      try {
        mkdirSync(dirname(file), { recursive: true });
        appendFileSync(file, '');
      } catch (err) {
        throw new Error(
          `${target.setting ?? 'telemetry.file (MUSE_TRACE_FILE)'}: cannot write spans to ${file}: ${(err as Error).message}`,
        );
      }
      this.write = (text) => appendFileSync(file, text);
      this.target = file;
    }
  }
  export(spans: ReadableSpan[], done: (r: ExportResult) => void): void {
    const lines = spans.map((s) =>
      JSON.stringify({
        traceId: s.spanContext().traceId,
        spanId: s.spanContext().spanId,
        parentSpanId: s.parentSpanId,
        name: s.name,
        service: s.resource.attributes['service.name'],
        startMs: hrTimeToMilliseconds(s.startTime),
        durationMs: hrTimeToMilliseconds(s.duration),
        kind: SpanKind[s.kind],
        // A failed request, step or workflow task must not read as a success: its status and recorded exceptions.
        status: {
          code: SpanStatusCode[s.status.code],
          ...(s.status.message ? { message: s.status.message } : {}),
        },
        attributes: s.attributes,
        ...(s.events.length > 0
          ? {
              events: s.events.map((e) => ({
                name: e.name,
                timeMs: hrTimeToMilliseconds(e.time),
                ...(e.attributes ? { attributes: e.attributes } : {}),
              })),
            }
          : {}),
      }),
    );
    try {
      this.write(`${lines.join('\n')}\n`);
      done({ code: ExportResultCode.SUCCESS });
    } catch (error) {
      // Once per process: a full disk would otherwise print a line for every span.
      if (!this.failed) {
        this.failed = true;
        console.error(`telemetry: cannot write spans to ${this.target}: ${(error as Error).message}`);
      }
      done({ code: ExportResultCode.FAILED, error: error as Error });
    }
  }
  async shutdown(): Promise<void> {}
}

let provider: BasicTracerProvider | undefined;
let exporter: SpanExporter | undefined;
let resource: Resource | undefined;
/** The globals this process's initTelemetry installed: shutdownTelemetry removes those and no others. */
let installed: { tracerProvider: boolean; propagator: boolean; contextManager: boolean } | undefined;

/** The process's telemetry resource (the Temporal workflow span sink needs it). */
export function telemetryResource(): Resource | undefined {
  return resource;
}

/**
 * Installs the global tracer provider once per process; returns the exporter (for the Temporal workflow sink). Where
 * OpenTelemetry was set up before (auto-instrumentation through NODE_OPTIONS, a host application), what it installed
 * stays, and Muse's spans go to its tracer provider: the workflow spans are all that reach Muse's own exporter.
 */
export function initTelemetry(cfg: MuseConfig, serviceRole: string): SpanExporter | undefined {
  if (provider) return exporter;
  const kind = cfg.telemetry.exporter;
  try {
    exporter =
      kind === 'console'
        ? new JsonLinesSpanExporter({ stream: process.stderr })
        : kind === 'file'
          ? new JsonLinesSpanExporter(
              cfg.telemetry.file
                ? { file: cfg.telemetry.file }
                : {
                    file: `${cfg.dataDir}/traces.jsonl`,
                    setting:
                      'the trace file in the data dir (telemetry.file, MUSE_TRACE_FILE, names another)',
                  },
            )
          : undefined;
  } catch (err) {
    // A worker or member that would trace nothing must not start; a client command (`muse cancel` on a runaway run,
    // by a user who cannot write the shared trace file) goes on without its few spans, saying so.
    if (serviceRole !== 'client') throw err;
    console.error(`telemetry: ${(err as Error).message}; going on without tracing`);
    exporter = undefined;
  }
  resource = new Resource({ 'service.name': `${cfg.telemetry.serviceName}-${serviceRole}` });
  provider = new BasicTracerProvider({ resource });
  if (exporter) provider.addSpanProcessor(new SimpleSpanProcessor(exporter));
  const contextManager = new AsyncLocalStorageContextManager().enable();
  installed = {
    propagator: propagation.setGlobalPropagator(new W3CTraceContextPropagator()),
    contextManager: context.setGlobalContextManager(contextManager),
    tracerProvider: trace.setGlobalTracerProvider(provider),
  };
  if (!installed.contextManager) contextManager.disable();
  if (!installed.tracerProvider)
    process.emitWarning(
      `OpenTelemetry was set up in this process before Muse: Muse's spans go to the tracer provider already there${
        exporter ? `, and only workflow spans to its own '${kind}' exporter` : ''
      }`,
      { code: 'MUSE_TELEMETRY_PREINSTALLED' },
    );
  return exporter;
}

/** Flushes and removes this process's telemetry (what was set up before it stays); a later initTelemetry sets it up afresh. */
export async function shutdownTelemetry(): Promise<void> {
  await provider?.shutdown();
  if (installed?.tracerProvider) trace.disable();
  if (installed?.propagator) propagation.disable();
  if (installed?.contextManager) context.disable();
  provider = undefined;
  exporter = undefined;
  resource = undefined;
  installed = undefined;
}

export const tracer = () => trace.getTracer('muse');

/**
 * A tracer that looks up the global one at each span. The API hands out tracers bound to the provider of the moment:
 * one kept by a long-lived object (a Temporal client's interceptor) across a shutdown and re-init fed the old,
 * shut-down provider, and its spans were dropped.
 */
export function currentTracer(name: string): Tracer {
  return {
    startSpan: (...args) => trace.getTracer(name).startSpan(...args),
    startActiveSpan: ((...args: Parameters<Tracer['startActiveSpan']>) =>
      (trace.getTracer(name).startActiveSpan as (...a: unknown[]) => unknown)(
        ...args,
      )) as Tracer['startActiveSpan'],
  };
}

const natsSetter: TextMapSetter<MsgHdrs> = { set: (h, k, v) => h.set(k, v) };
const natsGetter: TextMapGetter<MsgHdrs | undefined> = {
  keys: (h) => (h ? [...h.keys()] : []),
  get: (h, k) => h?.get(k) || undefined,
};

export function injectTraceHeaders(h: MsgHdrs, ctx: Context = context.active()): void {
  propagation.inject(ctx, h, natsSetter);
}

export function extractTraceContext(h: MsgHdrs | undefined): Context {
  return propagation.extract(context.active(), h, natsGetter);
}
