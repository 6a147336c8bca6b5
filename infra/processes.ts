// What can be told about a process by its pid, without being its parent: whether it runs, since when, and what.
// Pids are reused (after a crash, a reboot, in a restarted container numbering from 1), so a recorded pid names its
// process only together with its start time or its command line.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** Alive and not a zombie: a killed child of a process that has not reaped it still answers kill(0). */
export function isProcessAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  const state = procStat(pid)?.[0];
  return state !== 'Z' && state !== 'X';
}

/**
 * When the process started, as an opaque token that differs between two processes given the same pid: the start
 * time in clock ticks since boot from procfs. Undefined where there is no procfs (macOS) or the process is gone.
 */
export function processStartTime(pid: number): string | undefined {
  return procStat(pid)?.[19];
}

/**
 * The process's command line, its arguments joined by spaces: from procfs, else from `ps` (macOS). Undefined when
 * neither can say (the process gone, procfs mounted with hidepid and no `ps`).
 */
export function processCommandLine(pid: number): string | undefined {
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
  } catch {
    // no procfs: ask ps
  }
  try {
    const out = execFileSync('ps', ['-o', 'command=', '-p', String(pid)], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
      timeout: 5_000,
    }).trim();
    return out.length > 0 ? out : undefined;
  } catch {
    return undefined;
  }
}

/** The fields of /proc/<pid>/stat after the command name (state first), or undefined without procfs. */
function procStat(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name, in parentheses, may itself hold spaces and parentheses: the fields start after the last one.
    return stat
      .slice(stat.lastIndexOf(')') + 2)
      .trim()
      .split(' ');
  } catch {
    return undefined;
  }
}
