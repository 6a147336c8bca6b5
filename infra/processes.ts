// What can be told about a process by its pid, without being its parent: whether it runs, since when, what, and
// whether it listens on a port.
// Pids are reused (after a crash, a reboot, in a restarted container numbering from 1), so a recorded pid names its
// process only together with its start time or its command line.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

/**
 * Alive and not a zombie: a killed child of a process that has not reaped it still answers kill(0). A multi-threaded
 * process (a Go server) shows its first thread a zombie while the others are still exiting and still hold its files
 * (a listening port): it is gone only when they are.
 */
export function isProcessAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  const state = procStat(pid)?.[0];
  if (state !== 'Z' && state !== 'X') return true;
  return threadsLeft(pid) > 1;
}

/** Threads of the process procfs still lists (its first thread, a zombie, among them); 0 without procfs. */
function threadsLeft(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/task`).length;
  } catch {
    return 0;
  }
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

/**
 * Whether the process, or one of its descendants (a wrapper script's server), holds a listening TCP socket on this
 * port, told from procfs: the port's listening sockets in /proc/net/tcp{,6} matched against the processes' open
 * descriptors. Undefined where procfs cannot say (macOS, the process's descriptors unreadable, no listener listed).
 */
export function listensOn(pid: number, port: number): boolean | undefined {
  const inodes = listeningSocketInodes(port);
  if (inodes === undefined) return undefined;
  let ownFds: string[];
  try {
    ownFds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return undefined;
  }
  // Something answered on the port, yet procfs lists no listener: a procfs that does not show sockets (WSL1, some
  // sandboxes) cannot say. A port taken by another server shows that server's socket.
  if (inodes.size === 0) return undefined;
  const holds = (p: number, fds: string[]) =>
    fds.some((fd) => {
      try {
        return inodes.has(readlinkSync(`/proc/${p}/fd/${fd}`));
      } catch {
        return false; // closed since the listing
      }
    });
  if (holds(pid, ownFds)) return true;
  for (const child of descendants(pid)) {
    try {
      if (holds(child, readdirSync(`/proc/${child}/fd`))) return true;
    } catch {
      // gone, or not ours to read
    }
  }
  return false;
}

/** `socket:[inode]` of each listening TCP socket (IPv4 and IPv6) on the port; undefined without procfs. */
function listeningSocketInodes(port: number): Set<string> | undefined {
  const tables = ['/proc/net/tcp', '/proc/net/tcp6'].flatMap((file) => {
    try {
      return [readFileSync(file, 'utf8')];
    } catch {
      return [];
    }
  });
  if (tables.length === 0) return undefined;
  const LISTEN = '0A';
  const inodes = new Set<string>();
  for (const line of tables.join('\n').split('\n')) {
    // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...
    const fields = line.trim().split(/\s+/);
    const localPort = fields[1]?.split(':')[1];
    if (localPort && fields[3] === LISTEN && Number.parseInt(localPort, 16) === port) {
      inodes.add(`socket:[${fields[9]}]`);
    }
  }
  return inodes;
}

/** Every process descended from pid, from the parent pids in procfs. */
function descendants(pid: number): number[] {
  const children = new Map<number, number[]>();
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return [];
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    const parent = Number(procStat(Number(entry))?.[1]);
    if (!Number.isInteger(parent)) continue;
    const siblings = children.get(parent);
    if (siblings) siblings.push(Number(entry));
    else children.set(parent, [Number(entry)]);
  }
  const found: number[] = [];
  const queue = [...(children.get(pid) ?? [])];
  while (queue.length > 0) {
    const next = queue.shift()!;
    found.push(next);
    queue.push(...(children.get(next) ?? []));
  }
  return found;
}
