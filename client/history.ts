// Reads a workflow's history across every continue-as-new run, with sizes as the server stores them.
import type { Client } from '@temporalio/client';
import type { temporal as protoTypes } from '@temporalio/proto';
import proto from '@temporalio/proto';

// The proto package is CommonJS: its namespace comes through the default export under plain Node ESM.
const { temporal } = proto;

export interface RunHistory {
  runId: string;
  events: number;
  bytes: number;
  continuedAsNew: boolean;
}

export async function historyChain(
  client: Client,
  workflowId: string,
  firstRunId: string,
): Promise<RunHistory[]> {
  const runs: RunHistory[] = [];
  let runId: string | undefined = firstRunId;
  while (runId) {
    const history: protoTypes.api.history.v1.IHistory = await client.workflow
      .getHandle(workflowId, runId)
      .fetchHistory();
    const events: protoTypes.api.history.v1.IHistoryEvent[] = history.events ?? [];
    const last = events.at(-1);
    const next: string | undefined =
      last?.workflowExecutionContinuedAsNewEventAttributes?.newExecutionRunId ?? undefined;
    runs.push({
      runId,
      events: events.length,
      bytes: temporal.api.history.v1.History.encode(history).finish().length,
      continuedAsNew: Boolean(next),
    });
    runId = next ?? undefined;
  }
  return runs;
}
