// The batch runner's files and ids, without a server: input lines, workflow ids, the results file and its lock.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Client, WorkflowNotFoundError } from '@temporalio/client';
import { describe, expect, it } from 'vitest';
import {
  assignWorkflowIds,
  BatchError,
  batchJobId,
  defaultJobId,
  idsHash,
  lockResults,
  openResults,
  readBatchFile,
  resultLine,
  sharedBatchSpec,
} from '../../client/batch.js';
import {
  parallelMuseRunId,
  parallelMuseRunIdFor,
  parseParallelMuseSpec,
  questionWorkflowId,
  specHash,
} from '../../client/parallel-muse.js';
import { processStartTime } from '../../infra/processes.js';
import { tempDir } from '../helpers/temp.js';

const tmp = () => tempDir('muse-batch-unit-');

describe('batch input', () => {
  it('accepts numeric answers as text and reports bad lines by number', () => {
    const f = join(tmp(), 'q.jsonl');
    writeFileSync(f, '{"question": "When?", "answer": 1907}\n{"question": oops}\n{"question": "Who?"}\n');
    const { items, errors } = readBatchFile(f);
    expect(items).toEqual([
      { line: 1, question: 'When?', answer: '1907', occurrence: 0 },
      { line: 3, question: 'Who?', occurrence: 0 },
    ]);
    expect(errors).toEqual([{ line: 2, error: expect.stringMatching(/line 2 is not valid JSON/) }]);
  });

  it("keeps a line's other fields (a dataset's id), and its result line carries them with the line number", () => {
    const f = join(tmp(), 'q.jsonl');
    writeFileSync(f, '{"id": "hotpot_123", "question": "When?", "answer": "1907", "level": "hard"}\n');
    const { items } = readBatchFile(f);
    expect(items).toEqual([
      {
        line: 1,
        question: 'When?',
        answer: '1907',
        occurrence: 0,
        fields: { id: 'hotpot_123', level: 'hard' },
      },
    ]);
    const line = resultLine('j', 'w', 'h', { question: 'When?', rollouts: [] } as never, items[0]);
    expect(line).toMatchObject({ line: 1, fields: { id: 'hotpot_123', level: 'hard' }, question: 'When?' });
  });

  it('reports a numeric answer JSON has already changed (past 2^53, an exponent) as a bad line', () => {
    const f = join(tmp(), 'q.jsonl');
    writeFileSync(
      f,
      '{"question": "A?", "answer": 12345678901234567890}\n{"question": "B?", "answer": 1e21}\n{"question": "C?", "answer": -2.5}\n',
    );
    const { items, errors } = readBatchFile(f);
    expect(items).toEqual([{ line: 3, question: 'C?', answer: '-2.5', occurrence: 0 }]);
    expect(errors.map((e) => e.line)).toEqual([1, 2]);
    expect(errors[0]!.error).toMatch(/changed by JSON; give it as text/);
  });

  it('reports a blank answer as a bad line, which would otherwise score every prediction wrong', () => {
    const f = join(tmp(), 'q.jsonl');
    writeFileSync(f, '{"question": "When?", "answer": "  "}\n{"question": "Who?", "answer": "Ada"}\n');
    const { items, errors } = readBatchFile(f);
    expect(items).toEqual([{ line: 2, question: 'Who?', answer: 'Ada', occurrence: 0 }]);
    expect(errors).toEqual([{ line: 1, error: expect.stringMatching(/answer must not be empty/) }]);
  });

  it('reads a null answer as none, and says what an answer must be when it is something else', () => {
    const f = join(tmp(), 'q.jsonl');
    writeFileSync(f, '{"question": "When?", "answer": null}\n{"question": "Who?", "answer": ["a", "b"]}\n');
    const { items, errors } = readBatchFile(f);
    expect(items).toEqual([{ line: 1, question: 'When?', occurrence: 0 }]);
    expect(errors).toEqual([
      {
        line: 2,
        error: 'line 2: answer: answer must be text or a number (leave it out, or null, when there is none)',
      },
    ]);
  });
});

describe('workflow ids', () => {
  const pm = (o: Record<string, unknown>, t: Record<string, unknown> = {}) =>
    parseParallelMuseSpec({ ...o, trajectory: { question: 'Where?', ...t } });

  it('parallel-muse run: the same command gives the same id, any changed option another', () => {
    const base = parallelMuseRunId(pm({ n: 8 }));
    // Defaults spelled out and keys in another order: the same validated spec.
    expect(parallelMuseRunId(pm({ branchMode: 'tool_call_ppl', n: 8 }, { seed: 0 }))).toBe(base);
    const changed = [
      pm({ n: 9 }),
      pm({ branchMode: 'none' }),
      pm({}, { pool: 'other' }),
      pm({}, { policy: 'resum' }),
      pm({}, { maxTurns: 10 }),
      pm({}, { seed: 1 }),
      pm({}, { answer: 'X' }),
      pm({}, { question: 'Where else?' }),
    ].map(parallelMuseRunId);
    expect(new Set([base, ...changed]).size).toBe(changed.length + 1);
    // Not the limit of rollouts in flight: it changes only how fast the run goes.
    expect(parallelMuseRunId(pm({ n: 8, maxConcurrentRollouts: 4 }))).toBe(base);
  });

  /** The workflow id of each line of a questions file holding `text`, by line number. */
  function lineIds(text: string): Map<number, string> {
    const { hash } = sharedBatchSpec({ n: 2, branchMode: 'none', trajectory: {} });
    const f = join(tmp(), 'q.jsonl');
    writeFileSync(f, text);
    return new Map(assignWorkflowIds(readBatchFile(f).items, 'job', hash).map((i) => [i.line, i.workflowId]));
  }
  const line = (question: string, answer?: string) => `${JSON.stringify({ question, answer })}\n`;

  it('batch: keyed on the question and its occurrence, not its line, so inserting a line renumbers nothing', () => {
    const before = lineIds(line('a') + line('b') + line('a'));
    const after = lineIds(line('new') + line('a') + line('b') + line('a'));
    expect([2, 3, 4].map((n) => after.get(n))).toEqual([1, 2, 3].map((n) => before.get(n)));
    // Identical questions stay distinct.
    expect(before.get(1)).not.toBe(before.get(3));
  });

  it('batch: a bad line still counts as its question occurring, so fixing it gives no other line its run', () => {
    const bad = lineIds(line('Q', '') + line('Q', 'A'));
    const fixed = lineIds(line('Q', 'B') + line('Q', 'A'));
    expect(bad.has(1)).toBe(false);
    // Line 2 keeps the run (and result) it had; line 1 gets one of its own.
    expect(fixed.get(2)).toBe(bad.get(2));
    expect(fixed.get(1)).not.toBe(bad.get(2));
  });

  it('batch: the shared spec hash ignores per-question fields and changes with any option', () => {
    const h = (s: Parameters<typeof sharedBatchSpec>[0]) => sharedBatchSpec(s).hash;
    const base = h({ n: 2, branchMode: 'none', trajectory: {} });
    expect(h({ n: 2, branchMode: 'none', trajectory: { answer: 'x', policy: 'react' } })).toBe(base);
    expect(h({ n: 3, branchMode: 'none', trajectory: {} })).not.toBe(base);
    // Pinned: results files and running questions of earlier versions carry these hashes; others would refuse
    // them (other options) and start their questions again under new ids.
    expect(h({ n: 8, trajectory: {} })).toBe('ac737263ffc62e63');
    expect(sharedBatchSpec({ n: 8, maxConcurrentRollouts: 32, trajectory: {} }).withLimit).toBe(
      '4eef77aaa8348664',
    );
    // The limit changes only how fast a question runs: not its ids (see the results file's test for earlier ones).
    expect(h({ n: 8, maxConcurrentRollouts: 32, trajectory: {} })).toBe('ac737263ffc62e63');
    expect(sharedBatchSpec({ n: 8, trajectory: {} }).withLimit).toBe('ac737263ffc62e63');
    expect(h({ n: 2, branchMode: 'none', trajectory: { maxTurns: 5 } })).not.toBe(base);
    expect(() => h({ n: 5, r: 2, trajectory: {} })).toThrow(/N=5/);
  });
});

describe('ids of runs an earlier version started (maxConcurrentRollouts counted then)', () => {
  /** A Temporal client that knows workflows under `ids` only. */
  const clientKnowing = (...ids: string[]) =>
    ({
      workflow: {
        getHandle: (id: string) => ({
          describe: async () => {
            if (ids.includes(id)) return { status: { name: 'RUNNING' } };
            throw new WorkflowNotFoundError('not found', id, undefined);
          },
        }),
      },
    }) as unknown as Client;

  it('muse run attaches to the run under the earlier id where one exists, else takes the new one', async () => {
    const spec = parseParallelMuseSpec({
      n: 8,
      maxConcurrentRollouts: 4,
      trajectory: { question: 'Where?' },
    });
    const id = parallelMuseRunId(spec);
    const earlier = `pm-${specHash(spec).slice(0, 16)}`;
    expect(earlier).not.toBe(id);
    expect(await parallelMuseRunIdFor(clientKnowing(earlier), spec)).toBe(earlier);
    expect(await parallelMuseRunIdFor(clientKnowing(), spec)).toBe(id);
    // At the default limit the two are one id: nothing to ask.
    const plain = parseParallelMuseSpec({ n: 8, trajectory: { question: 'Where?' } });
    expect(await parallelMuseRunIdFor({} as Client, plain)).toBe(parallelMuseRunId(plain));
  });

  it("a batch goes on under its results' hash, else under the earlier one where its first question runs under it", async () => {
    const shared = sharedBatchSpec({ n: 8, maxConcurrentRollouts: 32, trajectory: {} });
    const first = { question: 'Where?', occurrence: 0 };
    const earlierId = questionWorkflowId('job', shared.withLimit, 'Where?', 0);
    expect(await idsHash(clientKnowing(), shared, 'from-results', 'job', first)).toBe('from-results');
    // Stopped before any result was written: its first question's run tells.
    expect(await idsHash(clientKnowing(earlierId), shared, undefined, 'job', first)).toBe(shared.withLimit);
    expect(await idsHash(clientKnowing(), shared, undefined, 'job', first)).toBe(shared.hash);
    expect(await idsHash(clientKnowing(earlierId), shared, undefined, 'job', undefined)).toBe(shared.hash);
  });
});

describe('results file', () => {
  it('refuses one written with other options, naming --out', () => {
    const out = join(tmp(), 'out.jsonl');
    writeFileSync(out, `${JSON.stringify({ workflowId: 'w1', spec: 'aaaa' })}\n`);
    expect(() => openResults(out, 'bbbb')).toThrow(BatchError);
    expect(() => openResults(out, 'bbbb')).toThrow(/--out/);
    expect([...openResults(out, 'aaaa').done.keys()]).toEqual(['w1']);
  });

  it('takes the hash an earlier version gave the same options (the limit counted then), and goes on under it', () => {
    const out = join(tmp(), 'out.jsonl');
    const shared = sharedBatchSpec({ n: 8, maxConcurrentRollouts: 32, trajectory: {} });
    writeFileSync(out, `${JSON.stringify({ workflowId: 'w1', spec: shared.withLimit })}\n`);
    expect(openResults(out, shared.hash, undefined, shared.withLimit)).toEqual({
      done: new Map([['w1', { answer: null, correct: null }]]),
      spec: '4eef77aaa8348664',
    });
    // Another limit then was other options: its hash is neither.
    const other = sharedBatchSpec({ n: 8, maxConcurrentRollouts: 64, trajectory: {} });
    expect(() => openResults(out, other.hash, undefined, other.withLimit)).toThrow(/other options/);
    writeFileSync(out, `${JSON.stringify({ workflowId: 'w2', spec: other.hash })}\n`);
    expect(openResults(out, other.hash, undefined, other.withLimit).spec).toBe(other.hash);
  });

  it('keeps the job the file records, and refuses another one, so a moved file or a new --job reruns nothing', () => {
    const out = join(tmp(), 'out.jsonl');
    writeFileSync(out, `${JSON.stringify({ job: 'batch-1', workflowId: 'batch-1-q0-h', spec: 'h' })}\n`);
    expect(openResults(out, 'h')).toEqual({
      done: new Map([['batch-1-q0-h', { answer: null, correct: null }]]),
      job: 'batch-1',
      spec: 'h',
    });
    expect(openResults(out, 'h', 'batch-1').job).toBe('batch-1');
    expect(() => openResults(out, 'h', 'other')).toThrow(
      /holds results of job batch-1, not other.*--job batch-1/,
    );
    expect(openResults(join(tmp(), 'none.jsonl'), 'h')).toEqual({ done: new Map() });
  });

  it("keeps each scored line's verdict and the answer it was judged against", () => {
    const out = join(tmp(), 'out.jsonl');
    const line = (workflowId: string, answer: string | null, correct: boolean | null) =>
      `${JSON.stringify({ workflowId, spec: 'h', answer, correct })}\n`;
    writeFileSync(out, line('w1', 'Paris', true) + line('w2', 'Rome', false) + line('w3', null, null));
    expect([...openResults(out, 'h').done]).toEqual([
      ['w1', { answer: 'Paris', correct: true }],
      ['w2', { answer: 'Rome', correct: false }],
      ['w3', { answer: null, correct: null }],
    ]);
  });

  it('refuses a file that is not one of results (the questions file, say) instead of appending to it', () => {
    const out = join(tmp(), 'out.jsonl');
    writeFileSync(out, '{"question": "Where?", "answer": "Paris"}\n');
    expect(() => openResults(out, 'h')).toThrow(
      /out\.jsonl \(--out\) is not a muse batch results file: line 1/,
    );
    writeFileSync(out, `${JSON.stringify({ workflowId: 'w1', spec: 'h' })}\nnull\n`);
    expect(() => openResults(out, 'h')).toThrow(/line 2 is not a result/);
    // Text that is not JSON at all is not a line cut short by a crash: left as it is, not cut off.
    const notes = 'my notes\nimportant last line';
    writeFileSync(out, notes);
    expect(() => openResults(out, 'h')).toThrow(/line 1 is not a result/);
    writeFileSync(out, `${JSON.stringify({ workflowId: 'w1', spec: 'h' })}\n${notes}`);
    expect(() => openResults(out, 'h')).toThrow(/line 2 is not a result/);
    expect(readFileSync(out, 'utf8')).toBe(`${JSON.stringify({ workflowId: 'w1', spec: 'h' })}\n${notes}`);
    // A line cut short mid-file (as earlier versions left one, appending after it) is still a results file.
    writeFileSync(
      out,
      `{"job":"j","workflowId":"w0","sp\n${JSON.stringify({ workflowId: 'w1', spec: 'h' })}\n`,
    );
    expect([...openResults(out, 'h').done.keys()]).toEqual(['w1']);
    // Nor is text with NULs in every other byte (UTF-16): refused, not taken for a crash's NULs and cut.
    const utf16 = Buffer.from('my notes\nimportant last line\n', 'utf16le');
    writeFileSync(out, utf16);
    expect(() => openResults(out, 'h')).toThrow(/line 1 is not a result/);
    expect(readFileSync(out)).toEqual(utf16);
    // Lines that only look like objects (Python dicts) are not results cut short: refused, the file left whole.
    const dicts = "{'question': 'a'}\n{'question': 'b'}";
    writeFileSync(out, dicts);
    expect(() => openResults(out, 'h')).toThrow(/line 1 is not a result/);
    expect(readFileSync(out, 'utf8')).toBe(dicts);
  });

  it('names --out when it cannot be read (a directory, say)', () => {
    expect(() => openResults(tmp(), 'h')).toThrow(/^--out: cannot read .*EISDIR/);
  });

  it('remembers the job beside the results, so a re-run without --job continues one that wrote no result yet', () => {
    const out = join(tmp(), 'out.jsonl');
    expect(batchJobId(out, 'nightly')).toBe('nightly');
    expect(readFileSync(`${out}.job`, 'utf8')).toBe('nightly\n');
    expect(batchJobId(out)).toBe('nightly');
    // The results' own record and an explicit --job come first.
    expect(batchJobId(out, undefined, 'from-results')).toBe('from-results');
    expect(batchJobId(out, 'other')).toBe('other');
    const fresh = join(tmp(), 'fresh.jsonl');
    expect(batchJobId(fresh)).toBe(defaultJobId(fresh));
  });

  it('reads lines of the older format (no spec) without refusing: their questions run once more', () => {
    const out = join(tmp(), 'out.jsonl');
    writeFileSync(out, `${JSON.stringify({ workflowId: 'job-q0-abc' })}\n`);
    expect([...openResults(out, 'bbbb').done.keys()]).toEqual(['job-q0-abc']);
  });

  it('drops a last line cut short by a crash, so the file stays JSON lines and the next result a line of its own', () => {
    const out = join(tmp(), 'out.jsonl');
    const first = `${JSON.stringify({ workflowId: 'w1', spec: 'h', prediction: 'Zürich' })}\n`;
    // As resultLine writes them, job first (what tells a line cut short from other text).
    const written = JSON.stringify(resultLine('j', 'w2', 'h', { question: 'q', rollouts: [] } as never));
    expect(written.startsWith('{"job":"j","workflowId":"w2"')).toBe(true);
    writeFileSync(out, `${first}${written.slice(0, 40)}`);
    expect([...openResults(out, 'h').done.keys()]).toEqual(['w1']);
    expect(readFileSync(out, 'utf8')).toBe(first);
    openResults(out, 'h');
    expect(readFileSync(out, 'utf8')).toBe(first);
    // A whole last line that only lacks its newline is kept and ended.
    writeFileSync(out, first.trimEnd());
    expect([...openResults(out, 'h').done.keys()]).toEqual(['w1']);
    expect(readFileSync(out, 'utf8')).toBe(first);
  });

  it('cuts at the right byte after undecodable bytes an earlier cut left mid-file', () => {
    const out = join(tmp(), 'out.jsonl');
    const whole = `${JSON.stringify({ workflowId: 'w1', spec: 'h' })}\n`;
    // A line an earlier version cut inside a three-byte character, then a whole line, then a line cut short.
    const brokenMidFile = Buffer.concat([
      Buffer.from('{"job":"j","question":"'),
      Buffer.from('日').subarray(0, 2),
      Buffer.from('\n'),
    ]);
    const kept = Buffer.concat([brokenMidFile, Buffer.from(whole)]);
    writeFileSync(out, Buffer.concat([kept, Buffer.from('{"job":"j","wo')]));
    expect([...openResults(out, 'h').done.keys()]).toEqual(['w1']);
    expect(readFileSync(out)).toEqual(kept);
    // And the next run reads it again.
    expect([...openResults(out, 'h').done.keys()]).toEqual(['w1']);
  });

  it('takes NUL bytes a power loss left in place of an append for a line cut short, and a byte-order mark as nothing', () => {
    const out = join(tmp(), 'out.jsonl');
    const whole = `${JSON.stringify({ workflowId: 'w1', spec: 'h' })}\n`;
    writeFileSync(out, `${whole}${'\0'.repeat(40)}`);
    expect([...openResults(out, 'h').done.keys()]).toEqual(['w1']);
    expect(readFileSync(out, 'utf8')).toBe(whole);
    writeFileSync(out, `\uFEFF${whole}${'\0'.repeat(8)}{"job":"j","wor`);
    expect([...openResults(out, 'h').done.keys()]).toEqual(['w1']);
    expect(readFileSync(out, 'utf8')).toBe(`\uFEFF${whole}`);
  });
});

describe('results lock', () => {
  it('is exclusive while held, names the holder and --out, and goes on release', () => {
    const out = join(tmp(), 'out.jsonl');
    const release = lockResults(out);
    expect(existsSync(`${out}.lock`)).toBe(true);
    expect(() => lockResults(out)).toThrow(new RegExp(`pid ${process.pid}.*--out`));
    release();
    expect(existsSync(`${out}.lock`)).toBe(false);
    lockResults(out)();
  });

  it('is one lock and one default job for a results file however its path is spelled (symlinks)', () => {
    const dir = tmp();
    const link = join(tmp(), 'via-link');
    symlinkSync(dir, link);
    expect(defaultJobId(join(link, 'out.jsonl'))).toBe(defaultJobId(join(dir, 'out.jsonl')));
    // A symlink to the file itself.
    const real = join(dir, 'real.jsonl');
    writeFileSync(real, '');
    const alias = join(tmp(), 'alias.jsonl');
    symlinkSync(real, alias);
    const release = lockResults(real);
    expect(() => lockResults(alias)).toThrow(/another muse batch/);
    release();
    expect(defaultJobId(alias)).toBe(defaultJobId(real));
  });

  it('takes over a lock left by a dead process on this host, not one from another host', () => {
    const out = join(tmp(), 'out.jsonl');
    const dead = spawnSync(process.execPath, ['-e', '']).pid;
    writeFileSync(`${out}.lock`, JSON.stringify({ pid: dead, host: hostname() }));
    const release = lockResults(out);
    expect(JSON.parse(readFileSync(`${out}.lock`, 'utf8')).pid).toBe(process.pid);
    release();
    writeFileSync(`${out}.lock`, JSON.stringify({ pid: dead, host: `not-${hostname()}` }));
    expect(() => lockResults(out)).toThrow(/another muse batch/);
  });

  it('takes over a lock whose pid now belongs to another process (this one, say), told apart by its start time', () => {
    const out = join(tmp(), 'out.jsonl');
    const start = processStartTime(process.pid);
    expect(start).toMatch(/^\d+$/);
    // Left by a process killed outright that had this pid before (a restarted container numbers alike).
    writeFileSync(`${out}.lock`, JSON.stringify({ pid: process.pid, host: hostname(), start: `${start}0` }));
    const release = lockResults(out);
    expect(JSON.parse(readFileSync(`${out}.lock`, 'utf8'))).toEqual({
      pid: process.pid,
      host: hostname(),
      start,
    });
    // The lock this process holds stands, against itself too.
    expect(() => lockResults(out)).toThrow(new RegExp(`pid ${process.pid}`));
    release();
  });

  it('two re-runs taking over one stale lock at the same moment: never both get it', async () => {
    const batchModule = fileURLToPath(new URL('../../client/batch.ts', import.meta.url));
    // Each contender loads the module (slow under tsx, and by a different amount each time) and says "ready"; then,
    // per trial, it is sent a results file and an instant chosen once both are waiting, spins until that instant and
    // prints "got" (keeping the lock: its process stays alive) or the error. One that gets the instant too late says
    // so, and that trial does not count.
    const contender = `
      const { lockResults } = await import(${JSON.stringify(batchModule)});
      const { createInterface } = await import('node:readline');
      console.log('ready');
      createInterface({ input: process.stdin }).on('line', (l) => {
        const [out, at] = JSON.parse(l);
        if (!(Date.now() < at)) return console.log('late');
        while (Date.now() < at) {}
        try { lockResults(out); console.log('got'); }
        catch (e) { console.log(e.name); }
      });`;
    const contend = () => {
      const c = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', contender]);
      const lines: string[] = [];
      const waiters: Array<() => void> = [];
      let buf = '';
      let stderr = '';
      let exited = false;
      const wake = () => {
        for (const w of waiters.splice(0)) w();
      };
      c.stdout!.on('data', (d: Buffer) => {
        const parts = (buf + d.toString()).split('\n');
        buf = parts.pop()!;
        lines.push(...parts.map((l) => l.trim()));
        wake();
      });
      c.stderr!.on('data', (d: Buffer) => {
        stderr += d.toString();
      });
      c.on('exit', () => {
        exited = true;
        wake();
      });
      /** Its next line of output. */
      const next = async (): Promise<string> => {
        while (lines.length === 0) {
          if (exited) return `exited: ${stderr}`;
          await new Promise<void>((r) => waiters.push(r));
        }
        return lines.shift()!;
      };
      return { child: c, next };
    };
    const dead = spawnSync(process.execPath, ['-e', '']).pid;
    const contenders = [contend(), contend()];
    try {
      expect(await Promise.all(contenders.map((c) => c.next()))).toEqual(['ready', 'ready']);
      let raced = 0;
      for (let attempt = 0; attempt < 12 && raced < 6; attempt++) {
        const out = join(tmp(), 'out.jsonl');
        writeFileSync(`${out}.lock`, JSON.stringify({ pid: dead, host: hostname() }));
        // Both are waiting: the instant is chosen only now, with room to get it to them.
        const at = Date.now() + 300;
        for (const c of contenders) c.child.stdin!.write(`${JSON.stringify([out, at])}\n`);
        const results = await Promise.all(contenders.map((c) => c.next()));
        if (results.includes('late')) continue;
        raced++;
        expect(
          results.filter((r) => r === 'got'),
          results.join(', '),
        ).toHaveLength(1);
        expect(results.filter((r) => r !== 'got')).toEqual(['BatchError']);
        expect(existsSync(`${out}.lock.takeover`)).toBe(false);
      }
      // Enough trials really raced: a machine too busy to start both spins in time fails here, not silently.
      expect(raced).toBe(6);
    } finally {
      for (const c of contenders) c.child.kill('SIGKILL');
    }
  }, 60_000);
});
