// Lock files that keep two processes of one command apart (two `muse batch` on one results file, two `muse up` on one
// data directory). Created exclusively; one left by a dead process on this host is taken over, one taker at a time.
import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { isProcessAlive, processStartTime } from './processes.js';

export interface LockHolder {
  pid: number;
  host: string;
  /** processStartTime of the holder, where the host can tell: a later process given the same pid is not it. */
  start?: string;
}

export type LockAttempt =
  | { acquired: true; release: () => void }
  /** `holder`: the live process that holds it, when known; `takingOver`: another process is taking a stale one over. */
  | { acquired: false; holder?: LockHolder; takingOver?: boolean };

/**
 * Takes `lock` for this process, or says who holds it. The lock also goes when the process exits; release() removes
 * it only while it is still this process's own (never one another process took over).
 */
export function tryLock(lock: string): LockAttempt {
  const start = processStartTime(process.pid);
  const mine = JSON.stringify({ pid: process.pid, host: hostname(), ...(start ? { start } : {}) });
  for (let attempt = 0; ; attempt++) {
    try {
      writeFileSync(lock, mine, { flag: 'wx' });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const holder = lockHolder(lock);
      if (attempt === 0 && holder === 'stale') {
        if (!takeOverStale(lock, mine)) return { acquired: false, takingOver: true };
        continue;
      }
      return { acquired: false, ...(holder && holder !== 'stale' ? { holder } : {}) };
    }
  }
  const release = () => {
    if (existsSync(lock) && readFileSync(lock, 'utf8') === mine) rmSync(lock, { force: true });
  };
  process.once('exit', release);
  return {
    acquired: true,
    release: () => {
      process.off('exit', release);
      release();
    },
  };
}

/**
 * Removes a stale lock so the caller can create its own, one process at a time: two processes that both read the
 * lock as stale would otherwise each remove it, the second removing the lock the first just made. Whoever holds
 * `<lock>.takeover` (created exclusively) checks again and removes; false for the other.
 */
function takeOverStale(lock: string, mine: string): boolean {
  const marker = `${lock}.takeover`;
  try {
    writeFileSync(marker, mine, { flag: 'wx' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    return false;
  }
  try {
    if (lockHolder(lock) === 'stale') rmSync(lock, { force: true });
  } finally {
    rmSync(marker, { force: true });
  }
  return true;
}

function lockHolder(lock: string): LockHolder | 'stale' | undefined {
  let text: string;
  try {
    text = readFileSync(lock, 'utf8');
  } catch {
    return undefined; // gone meanwhile: the retry decides
  }
  let holder: LockHolder;
  try {
    holder = JSON.parse(text);
  } catch {
    // Empty or cut short: a crash between creating and writing it, unless that is happening right now.
    const st = statSync(lock, { throwIfNoEntry: false });
    return st && Date.now() - st.mtimeMs > 5000 ? 'stale' : undefined;
  }
  // Another host's process cannot be checked from here: its lock stands.
  if (holder.host !== hostname()) return holder;
  return holderRuns(holder) ? holder : 'stale';
}

/**
 * Whether the lock's holder still runs: its pid alive and, where both are known, started when the holder did. A lock
 * left by a process killed outright names a pid that may since be another's, this process's own included (a
 * restarted container numbers its processes alike).
 */
function holderRuns(holder: LockHolder): boolean {
  if (!isProcessAlive(holder.pid)) return false;
  if (holder.start === undefined) return true;
  const start = processStartTime(holder.pid);
  return start === undefined || start === holder.start;
}
