import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { connect } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { listensOn } from '../../infra/processes.js';
import { stopProcess } from '../../infra/services.js';

const LISTENER = `const s = require('node:net').createServer(); s.listen(0, '127.0.0.1', () => console.log(s.address().port));`;

const children: ChildProcess[] = [];
afterEach(() => {
  // Each in its own process group, so a wrapper's child goes with it.
  for (const child of children.splice(0)) {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // stopped by the test
    }
  }
});

/** Spawns a command that starts a listener somewhere in its process tree and prints its port. */
async function spawnListening(command: string, args: string[]): Promise<{ pid: number; port: number }> {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'inherit'], detached: true });
  children.push(child);
  const port = await new Promise<number>((ok, fail) => {
    child.stdout!.once('data', (chunk: Buffer) => ok(Number(chunk.toString().trim())));
    child.once('exit', (code) => fail(new Error(`listener exited with ${code}`)));
  });
  return { pid: child.pid!, port };
}

describe.runIf(existsSync('/proc/net/tcp'))('listensOn (procfs)', () => {
  it('tells the process holding a port from one that does not', async () => {
    const one = await spawnListening(process.execPath, ['-e', LISTENER]);
    const other = await spawnListening(process.execPath, ['-e', LISTENER]);
    expect(listensOn(one.pid, one.port)).toBe(true);
    expect(listensOn(one.pid, other.port)).toBe(false);
    expect(listensOn(other.pid, one.port)).toBe(false);
  });

  it("counts a descendant's socket as the process's own (a wrapper script that forks its server)", async () => {
    // `; exit` keeps sh from exec-ing node in its own place: node runs as sh's child.
    const { pid, port } = await spawnListening('sh', ['-c', `"${process.execPath}" -e "${LISTENER}"; exit`]);
    expect(listensOn(pid, port)).toBe(true);
  });

  it('cannot say for a process that is gone', () => {
    expect(listensOn(2 ** 22 + 7, 80)).toBeUndefined();
  });
});

describe('stopProcess', () => {
  it('stops a server started detached through a wrapper script that forks it, not the wrapper alone', async () => {
    const { pid, port } = await spawnListening('sh', ['-c', `"${process.execPath}" -e "${LISTENER}"; exit`]);
    await stopProcess(pid, { timeoutMs: 5_000 });
    // The listener (sh's child) went with it: its port takes a connection no more.
    const refused = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(false);
      });
      socket.once('error', () => resolve(true));
    });
    expect(refused).toBe(true);
  });

  it('waits for what the wrapper forked, and kills it when it ignores SIGTERM, after the wrapper itself has exited', async () => {
    // The wrapper exits on SIGTERM at once; its child ignores SIGTERM.
    const child = spawn('sh', ['-c', `sh -c 'trap "" TERM; sleep 30'; exit`], {
      stdio: 'ignore',
      detached: true,
    });
    await new Promise((r) => setTimeout(r, 200));
    const groupAlive = () => {
      try {
        process.kill(-child.pid!, 0);
        return true;
      } catch {
        return false;
      }
    };
    expect(groupAlive()).toBe(true);
    await stopProcess(child.pid!, { timeoutMs: 500, child });
    expect(groupAlive()).toBe(false);
  });

  it('refuses pids that would signal more than one server (-1: every process; 0: its own group)', async () => {
    // Stubbed: were the guard gone, the real call would signal every process this user may signal.
    const kill = vi.spyOn(process, 'kill').mockImplementation(() => true);
    try {
      await expect(stopProcess(1)).rejects.toThrow(/refusing to signal process 1/);
      expect(kill.mock.calls.filter(([pid, signal]) => pid === -1 && signal !== 0)).toEqual([]);
    } finally {
      kill.mockRestore();
    }
  });
});
