// Every prompt text Muse sends, in one place, plus the builders that wrap data in the tags the parsers
// (and the simulator) expect. Workflow-safe: strings only.

import { clipMiddle, clipText } from './clip.js';
import { parseTurn } from './format.js';
import type { ChatMessage } from './types.js';

/** Tool schemas in the Tongyi <tools> block: one JSON function signature a line. */
export const TOOL_SCHEMAS: readonly string[] = [
  JSON.stringify({
    type: 'function',
    function: {
      name: 'search',
      description:
        'Run web searches and return the top results (title, url, snippet) for each query. Several queries may be sent at once.',
      parameters: {
        type: 'object',
        properties: {
          query: {
            type: 'array',
            items: { type: 'string' },
            minItems: 1,
            maxItems: 10,
            description: 'The search queries.',
          },
        },
        required: ['query'],
      },
    },
  }),
  JSON.stringify({
    type: 'function',
    function: {
      name: 'visit',
      description: 'Open web pages and return what they say that is relevant to the goal.',
      parameters: {
        type: 'object',
        properties: {
          url: {
            type: 'array',
            items: { type: 'string' },
            minItems: 1,
            maxItems: 10,
            description: 'The URLs to open.',
          },
          goal: { type: 'string', description: 'The information sought on these pages.' },
        },
        required: ['url', 'goal'],
      },
    },
  }),
];

/** The tools and how to call them; `resultComesBack` says where the policy's prompt shows a call's result. */
const toolsBlock = (resultComesBack: string) => `# Tools

You may call one function per turn to help with the question.

The function signatures are inside <tools></tools>:
<tools>
${TOOL_SCHEMAS.join('\n')}
</tools>

To call a function, write a JSON object with the function name and its arguments inside <tool_call></tool_call>:
<tool_call>
{"name": <function-name>, "arguments": <args-json-object>}
</tool_call>
The result comes back ${resultComesBack}.`;

function withDate(prompt: string, date?: string): string {
  return date ? `${prompt}\n\nCurrent date: ${date}` : prompt;
}

/**
 * Where the server ends an agent turn: a model that goes on past its tool call starts imagining the tool's response
 * (and what it would do next), tokens the rollout pays for and throws away. As in the reference agent.
 */
export const TURN_STOP: readonly string[] = ['\n<tool_response>', '<tool_response>'];

/** ReAct (and ReSum between summaries): the whole history stays in the prompt. */
export const REACT_SYSTEM_PROMPT = `You are a deep research assistant. You answer hard questions by investigating them on the web: break the question down, search, read the sources, check facts against more than one source, and keep going until the answer is certain.

Every turn you write your reasoning inside <think></think>, then exactly one of:
- a tool call inside <tool_call></tool_call>, when you need more information;
- the final answer inside <answer></answer>, when the evidence is sufficient. Give the answer itself, short and exact, not an essay.

${toolsBlock('in the next message inside <tool_response></tool_response>')}`;

/**
 * IterResearch: the prompt holds only the question, the evolving report and the last action with its result,
 * so the report must carry everything worth keeping.
 */
export const ITERRESEARCH_SYSTEM_PROMPT = `You are a deep research assistant working in rounds. You answer hard questions by investigating them on the web. You do not see the full history of your work: each round you see the question, your research report so far (inside <report></report>), and your last action with its result (inside <last_action></last_action> and <last_observation></last_observation>).

Every round write, in this order:
1. your reasoning inside <think></think>;
2. the updated report inside <report></report>: rewrite the previous report so that it keeps every established fact, source, open lead and dead end that still matters, and adds what the last observation taught you. Anything you leave out of the report is lost for good;
3. exactly one action: a tool call inside <tool_call></tool_call> when you need more information, or the final answer inside <answer></answer> when the report supports it. Give the answer itself, short and exact.

${toolsBlock('in the next round inside <last_observation></last_observation>')}`;

/** ReSum summary turn: condenses the history so far into a state the agent can continue from. */
export const RESUM_SUMMARY_SYSTEM_PROMPT = `You condense the working history of a research agent so that it can continue from a short summary instead of the full history.

You are given the question inside <question></question> and the history inside <history></history> (it may start with the summary of earlier work). Write a summary that keeps:
- every fact established so far that bears on the question, with the source it came from;
- the partial answers and the candidates that were ruled out, and why;
- the leads still open and what the agent was about to do next.
Only include information stated in the history; do not guess or add anything. Leave out failed or useless steps unless knowing they failed avoids repeating them.

Reason inside <think></think> if you need to, then write the summary inside <summary></summary>.`;

/** Stage-2 aggregation, step 1: one trajectory distilled into a report. */
export const REPORT_SYSTEM_PROMPT = `You turn the trajectory of a research agent into a short problem-solving report. You are given the question inside <question></question> and the trajectory inside <trajectory></trajectory>.

Use only information contained in the trajectory; add nothing from your own knowledge. The report has three parts:
1. Solution planning: how the question was broken into subproblems, in which order they were tackled and how they depend on each other.
2. Solution methods: for each subproblem, the tool calls made (tool and arguments), and only the fragments of their results that were essential to the partial answers obtained; do not copy whole tool outputs.
3. Final reasoning: how the partial answers lead to the final answer.

Be concise and keep the structure clear enough that every step can be checked. Leave out steps that did not contribute. End the report with a line "Final answer: X" where X is the trajectory's final answer.

Write the report in Markdown inside <report></report>.`;

/** Stage-2 aggregation, step 2: all reports of one question read together, one answer chosen. */
export const INTEGRATION_SYSTEM_PROMPT = `You are the final analyst for a research question. Several independent attempts were made to answer it, and each has been written up as a report of its planning, methods, evidence and final answer. You are given the question inside <question></question> and the reports inside <reports></reports>.

Your task is to choose the single best-supported answer:
- Examine how each report reached its answer and how trustworthy its evidence is; reports can contradict each other or contain mistakes.
- Several reports agreeing is evidence that their answer is right, but not proof: check the reasoning behind it all the same.
- A report without a clear, definite final answer deserves much less trust.
- You must pick one report's answer. Do not merge different answers and do not write a broad answer that covers several candidates.
- You cannot use tools; rely only on the reports.
- The question has one definite answer; do not refuse because of uncertainty.

Reason inside <think></think>, then give the short final answer itself inside <answer></answer>.`;

/** Grading a prediction against the gold answer, for evaluation runs. */
export const JUDGE_SYSTEM_PROMPT = `You grade answers to questions. You are given the question inside <question></question>, the correct answer inside <gold></gold>, and a predicted answer inside <prediction></prediction>.

The prediction is correct when it means the same as the correct answer: differences in wording, formatting, units written out or abbreviated, or small rounding of numbers do not matter. It is incorrect when it gives a different answer, several candidate answers, only part of the answer, or no answer.

Reason briefly inside <think></think>, then write exactly <judgement>correct</judgement> or <judgement>incorrect</judgement>.`;

export function reactSystemPrompt(date?: string): string {
  return withDate(REACT_SYSTEM_PROMPT, date);
}

export function iterresearchSystemPrompt(date?: string): string {
  return withDate(ITERRESEARCH_SYSTEM_PROMPT, date);
}

export interface RenderOptions {
  /** Observations longer than this are cut, with a marker saying how much was left out. */
  maxObservationChars?: number;
  /** The last step's observation is not cut by maxObservationChars (see resum's summaryMessages). */
  keepLatestObservation?: boolean;
  /**
   * Overall budget in characters. Past it the first step (the plan) and the last step (the answer) stay in full,
   * as many steps before the last as fit stay too, and the steps between are replaced by a marker saying how many
   * were left out. Where those two steps alone pass the budget, both are cut in their middles (keeping their starts
   * and the last one's end), together to the budget but never below MIN_KEPT_CHARS and their markers (about 500
   * characters), so a budget under that is exceeded.
   */
  maxChars?: number;
}

function renderStep(step: { turn: string; observation?: string }, i: number, opts: RenderOptions): string {
  // A step with an observation was not the answer step: an <answer> in it without its end was cut off.
  const t = parseTurn(step.turn, step.observation !== undefined ? 'length' : undefined);
  const lines = [`## Step ${i + 1}`];
  if (t.think) lines.push(`Thinking: ${t.think}`);
  if (t.report !== undefined) lines.push(`Report: ${t.report}`);
  switch (t.kind) {
    case 'tool_call':
      lines.push(`Tool call: ${JSON.stringify({ name: t.call.name, arguments: t.call.arguments })}`);
      break;
    case 'invalid_tool_call':
      lines.push(`Tool call (malformed): ${t.raw}`);
      break;
    case 'answer':
      lines.push(`Answer: ${t.answer}`);
      break;
    case 'no_action':
      if (t.cutOffAnswer) lines.push('Answer: (cut off at the token limit, not given)');
      if (t.emptyAnswer) lines.push('Answer: (empty, not given)');
      break;
  }
  if (step.observation !== undefined) {
    lines.push(`Tool response:\n${clipText(step.observation, opts.maxObservationChars)}`);
  }
  return lines.join('\n');
}

/** Room kept for the marker that stands for the left-out steps. */
const ELISION_MARKER_CHARS = 80;
/** Room kept for clipMiddle's marker in a step cut in its middle. */
const CLIP_MARKER_CHARS = 40;
/** Kept of the first and last steps together however small the limit: a heading and the end of the last step. */
const MIN_KEPT_CHARS = 400;

/**
 * A trajectory as readable text for the report and summary calls: per step the reasoning, then the tool call
 * (or the answer), then the observation. Raw tags are left out so the reader is not tempted to continue the
 * trajectory instead of describing it. Steps keep their numbers when some are left out (see maxChars).
 */
export function renderTrajectory(
  steps: readonly { turn: string; observation?: string }[],
  opts: RenderOptions = {},
): string {
  const blocks = steps.map((s, i) =>
    renderStep(
      s,
      i,
      opts.keepLatestObservation && i === steps.length - 1
        ? { ...opts, maxObservationChars: undefined }
        : opts,
    ),
  );
  const full = blocks.join('\n\n');
  const max = opts.maxChars;
  if (max === undefined || full.length <= max) return full;
  const last = blocks.length - 1;
  const elided = (from: number) => {
    const left = from - 1;
    const which = left === 1 ? '1 step (step 2)' : `${left} steps (steps 2 to ${from})`;
    return left > 0 ? [`[… ${which} left out to fit the length limit]`] : [];
  };
  // The first and last steps alone pass the limit (long reasoning against a small window): each is cut in its middle,
  // the last step, which holds the findings, keeping three quarters of the room. Cut no further, the prompt would be
  // refused as often as it is asked again.
  const room = Math.max(MIN_KEPT_CHARS, max - ELISION_MARKER_CHARS - 2 * CLIP_MARKER_CHARS);
  if (last === 0) return clipMiddle(blocks[0]!, room);
  if (blocks[0]!.length + blocks[last]!.length + ELISION_MARKER_CHARS > max) {
    const first = clipMiddle(blocks[0]!, Math.min(blocks[0]!.length, Math.floor(room / 4)));
    const lastKept = clipMiddle(blocks[last]!, Math.max(0, room - first.length));
    return [first, ...elided(last), lastKept].join('\n\n');
  }
  // The latest steps hold the findings the answer rests on (and iterresearch's most evolved report).
  let used = blocks[0]!.length + blocks[last]!.length + ELISION_MARKER_CHARS;
  let from = last;
  while (from - 1 > 0 && used + blocks[from - 1]!.length + 2 <= max) used += blocks[--from]!.length + 2;
  return [blocks[0]!, ...elided(from), ...blocks.slice(from)].join('\n\n');
}

export function reportMessages(question: string, trajectoryText: string): ChatMessage[] {
  return [
    { role: 'system', content: REPORT_SYSTEM_PROMPT },
    {
      role: 'user',
      content: `<question>\n${question}\n</question>\n<trajectory>\n${trajectoryText}\n</trajectory>`,
    },
  ];
}

/** Reports are numbered from 1 in the order given; callers map the ids back to rollouts. */
export function integrationMessages(question: string, reports: readonly string[]): ChatMessage[] {
  const body = reports.map((r, i) => `<report id=${i + 1}>\n${r}\n</report>`).join('\n');
  return [
    { role: 'system', content: INTEGRATION_SYSTEM_PROMPT },
    {
      role: 'user',
      content: `<question>\n${question}\n</question>\n<reports>\n${body}${body ? '\n' : ''}</reports>`,
    },
  ];
}

export function judgeMessages(question: string, gold: string, prediction: string): ChatMessage[] {
  return [
    { role: 'system', content: JUDGE_SYSTEM_PROMPT },
    {
      role: 'user',
      content: `<question>\n${question}\n</question>\n<gold>\n${gold}\n</gold>\n<prediction>\n${prediction}\n</prediction>`,
    },
  ];
}
