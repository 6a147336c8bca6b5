// Histories of runs made by earlier versions of Muse, replayed under this one: a change to workflow code that would
// make a run in flight fail its replay (a non-determinism error, the run stuck until the old code is back) fails
// here first. Each fixture is a history exported with `temporal workflow show --output json` (compacted); the file
// names say what kind of run it is, and the list below what each one guards.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from '@temporalio/worker';
import { describe, expect, it } from 'vitest';
import { payloadConverterPath } from '../../common/temporal.js';
import { workflowBundle } from '../../workers/rollout-worker.js';
import { tempDir } from '../helpers/temp.js';

const fixtures = fileURLToPath(new URL('../fixtures/histories/', import.meta.url));

// What each history holds that this version must still replay, and the workflow id it ran under (a question's
// rollouts are named after it).
const FIXTURES: Record<string, { workflowId: string; guards: string }> = {
  'by-hand-trajectory.json': {
    workflowId: 'replay-fixture-trajectory',
    guards: 'a trajectory started by hand, its input checked in workflow code (check-input)',
  },
  'by-hand-question.json': {
    workflowId: 'replay-fixture-question',
    guards:
      'a question started by hand, its input and budget checked in workflow code (check-history-budget)',
  },
  'by-hand-trajectory-recorded.json': {
    workflowId: 'replay-fixture-trajectory-recorded',
    guards: 'a trajectory started by hand, its input checked by a local activity (check-input-recorded)',
  },
  'by-hand-question-recorded.json': {
    workflowId: 'replay-fixture-question-recorded',
    guards:
      'a question started by hand, its input and plan checked by a local activity (check-input-recorded)',
  },
  'client-question.json': {
    workflowId: 'pm-0ea9e30e53d79073',
    guards: 'a question muse run started (N=8, branching, every aggregator)',
  },
  'child-branch-trajectory.json': {
    workflowId: 'pm-a32e00e0e25304e3/r1-l0-p0-b0',
    guards: "a question's branch rollout: a child workflow started from its branch point's prefix",
  },
  'tool-step-failed-unfinished.json': {
    workflowId: 'traj-1e764206-4e7',
    guards:
      'a trajectory whose tool step failed for good: its turn kept in the log, marked unfinished (record-unfinished-turn)',
  },
  'question-answer-turn-branched.json': {
    workflowId: 'replay-fixture-answer-turn-branched',
    guards:
      'a question (K=12, T=1) started with the recorded input check, whose initial rollout had fewer tool-call steps than K, chosen with unscored steps and the answer turn ranked last: 5 branches, 7 from scratch',
  },
  'question-answer-turn-not-branched.json': {
    workflowId: 'replay-fixture-answer-turn-branch-2',
    guards:
      'a question (K=12, T=1) started before the input check, whose initial rollout had fewer tool-call steps than K, chosen when unscored steps and the answer turn were left out: 7 branches, 5 from scratch (the branch rule by checkedIn)',
  },
  'question-two-rounds.json': {
    workflowId: 'replay-fixture-two-rounds',
    guards:
      'a question muse run started with two branching rounds (N=8, K=2, T=1, R=2): rounds-branch-past-branch-point at round 2 (and the deprecated branch-unscored-ranked-last marker at round 1, which replays whether or not it is asked for)',
  },
  'question-every-rollout-failed.json': {
    workflowId: 'replay-fixture-all-failed',
    guards:
      "a question whose every rollout failed (its pool's server refused the job's model): failed, naming the first cause (fail-when-every-rollout-failed)",
  },
  'question-cancelled.json': {
    workflowId: 'replay-fixture-question-cancelled',
    guards:
      'a question cancelled while its rollouts ran: each asked to cancel by workflow id alone too, then ended cancelled (cancel-rollouts-latest-run)',
  },
  'question-cancelled-queued.json': {
    workflowId: 'replay-fixture-cancelled-queued-2',
    guards:
      'a question cancelled with rollouts still waiting for a slot (N=5, 2 at a time): only the 2 started asked to cancel by workflow id (cancel-rollouts-latest-run, as narrowed to started rollouts)',
  },
  'client-trajectory-continued.json': {
    workflowId: 'traj-a0206f1c-83f',
    guards: "a trajectory's second run: carried state in, continued as new after 3 steps (--steps-per-run 3)",
  },
};

const cacheDir = tempDir('muse-replay-');
// Bundled once for every fixture, as a worker bundles once for every run.
let bundle: ReturnType<typeof workflowBundle> | undefined;

describe('histories recorded by earlier versions', () => {
  const files = readdirSync(fixtures).filter((f) => f.endsWith('.json'));

  it('each fixture says what it guards', () => {
    expect(files.sort()).toEqual(Object.keys(FIXTURES).sort());
  });

  it.each(files)('%s replays under this version', { timeout: 120_000 }, async (file) => {
    const json = JSON.parse(readFileSync(join(fixtures, file), 'utf8'));
    const started = json.events[0].workflowExecutionStartedEventAttributes;
    bundle ??= workflowBundle(cacheDir);
    await Worker.runReplayHistory(
      { workflowBundle: await bundle, dataConverter: { payloadConverterPath } },
      // Taken as the CLI's JSON: the SDK converts it with its own protobuf types.
      json,
      FIXTURES[file]!.workflowId,
    );
    expect(started.workflowType.name).toMatch(/^(trajectory|parallelMuse)$/);
  });
});
