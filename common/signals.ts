// How a process ends on a signal it handled itself: with the exit status a shell gives a process the signal killed
// (128 + its number: 130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP).
import { constants } from 'node:os';

export function exitAsSignal(signal: NodeJS.Signals): never {
  process.exit(128 + (constants.signals[signal] ?? constants.signals.SIGTERM));
}
