// Small files that must never be read half-written: a process killed mid-write leaves the old one or the new one.
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';

/**
 * Writes `text` to `path` whole or not at all: into a file beside it, flushed to disk, then renamed over it. Writing
 * in place first empties the file, and a crash then leaves it empty (a batch's recorded job id read as none).
 */
export function replaceFileSync(path: string, text: string): void {
  const tmp = `${path}.${process.pid}.tmp`;
  try {
    const fd = openSync(tmp, 'w');
    try {
      writeSync(fd, text);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}
