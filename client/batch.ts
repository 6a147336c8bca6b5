// `muse batch`: every question of a JSONL file (the reference's {"question", "answer"} format) through
// ParallelMuse with a concurrency limit. Results are appended as they finish; a re-run skips questions
// already in the output and re-attaches to workflows still running, so nothing finished is redone.
import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Client } from '@temporalio/client';
import { z } from 'zod';
import type { ParallelMuseSpecInput } from '../agent/job.js';
import { formatZodError, type MuseConfig } from '../common/config.js';
import type { ParallelMuseResult } from '../workflows/parallel-muse.js';
import type { StepTimeouts } from '../workflows/trajectory.js';
import { parseParallelMuseSpec, questionWorkflowId, runParallelMuse } from './parallel-muse.js';

export const BatchLineSchema = z
  .object({ question: z.string().trim().min(1), answer: z.string().optional() })
  .passthrough();

export interface BatchLineError {
  line: number;
  error: string;
}

export function readBatchFile(path: string): {
  items: { line: number; question: string; answer?: string }[];
  errors: BatchLineError[];
} {
  const items: { line: number; question: string; answer?: string }[] = [];
  const errors: BatchLineError[] = [];
  readFileSync(path, 'utf8')
    .split('\n')
    .forEach((raw, i) => {
      const text = raw.trim();
      if (!text) return;
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch (err) {
        errors.push({ line: i + 1, error: `line ${i + 1} is not valid JSON: ${(err as Error).message}` });
        return;
      }
      const parsed = BatchLineSchema.safeParse(value);
      if (!parsed.success)
        errors.push({ line: i + 1, error: `line ${i + 1}: ${formatZodError(parsed.error)}` });
      else
        items.push({
          line: i + 1,
          question: parsed.data.question,
          ...(parsed.data.answer !== undefined ? { answer: String(parsed.data.answer) } : {}),
        });
    });
  return { items, errors };
}

/** One output line per question: the prediction, the aggregator, per-rollout records in the reference's shape, accounting. */
export function resultLine(jobId: string, workflowId: string, r: ParallelMuseResult) {
  return {
    job: jobId,
    workflowId,
    question: r.question,
    answer: r.answer ?? null,
    prediction: r.prediction,
    aggregator: r.aggregator,
    correct: r.correct ?? null,
    judge: r.judge ?? null,
    outcomes: r.outcomes,
    plan: r.plan,
    accounting: r.accounting,
    compression: r.compression ?? null,
    excluded: r.excluded,
    rollouts: r.rollouts.map((ro) => ({
      question: r.question,
      answer: r.answer ?? null,
      prediction: ro.prediction,
      rollout: ro.rolloutId,
      termination: ro.termination,
      rollout_type: ro.rollout_type,
      lineage: ro.lineage,
      usage: ro.usage,
      uncertainty: Number.isFinite(ro.uncertainty) ? ro.uncertainty : null,
      ...(ro.error ? { error: ro.error } : {}),
    })),
  };
}

export interface BatchOptions {
  input: string;
  output: string;
  jobId: string;
  concurrency: number;
  spec: Omit<ParallelMuseSpecInput, 'trajectory'> & {
    trajectory: Omit<ParallelMuseSpecInput['trajectory'], 'question'>;
  };
  timeouts?: StepTimeouts;
  onProgress?: (e: { done: number; total: number; skipped: number; failed: number; last?: string }) => void;
}

export interface BatchSummary {
  total: number;
  completed: number;
  skipped: number;
  failed: { line: number; error: string }[];
  badLines: BatchLineError[];
  correct: number;
  scored: number;
}

export async function runBatch(client: Client, cfg: MuseConfig, o: BatchOptions): Promise<BatchSummary> {
  const { items, errors } = readBatchFile(o.input);
  // Validate the shared spec once: a budget that cannot fit fails before any question starts.
  parseParallelMuseSpec({ ...o.spec, trajectory: { ...o.spec.trajectory, question: 'validation' } });
  const done = new Set<string>();
  if (existsSync(o.output)) {
    for (const line of readFileSync(o.output, 'utf8').split('\n')) {
      if (!line.trim()) continue;
      try {
        const id = (JSON.parse(line) as { workflowId?: string }).workflowId;
        if (id) done.add(id);
      } catch {
        // A line cut short by a crash is redone: its question's workflow result is simply fetched again.
      }
    }
  }
  mkdirSync(dirname(o.output), { recursive: true });
  const summary: BatchSummary = {
    total: items.length,
    completed: 0,
    skipped: 0,
    failed: [],
    badLines: errors,
    correct: 0,
    scored: 0,
  };
  const queue = items.map((item, index) => ({
    ...item,
    workflowId: questionWorkflowId(o.jobId, item.question, index),
  }));
  const report = (last?: string) =>
    o.onProgress?.({
      done: summary.completed + summary.skipped + summary.failed.length,
      total: summary.total,
      skipped: summary.skipped,
      failed: summary.failed.length,
      last,
    });
  const worker = async () => {
    for (let item = queue.shift(); item; item = queue.shift()) {
      if (done.has(item.workflowId)) {
        summary.skipped++;
        report();
        continue;
      }
      try {
        const { result } = await runParallelMuse(
          client,
          cfg,
          {
            ...o.spec,
            trajectory: {
              ...o.spec.trajectory,
              question: item.question,
              ...(item.answer !== undefined ? { answer: item.answer } : {}),
            },
          },
          { workflowId: item.workflowId, jobId: o.jobId, ...(o.timeouts ? { timeouts: o.timeouts } : {}) },
        );
        appendFileSync(o.output, `${JSON.stringify(resultLine(o.jobId, item.workflowId, result))}\n`);
        summary.completed++;
        if (result.correct !== undefined) {
          summary.scored++;
          if (result.correct) summary.correct++;
        }
        report(result.prediction ?? '(no answer)');
      } catch (err) {
        summary.failed.push({ line: item.line, error: (err as Error).message });
        report();
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, o.concurrency) }, worker));
  return summary;
}
