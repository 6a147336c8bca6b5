// Files that must never be read half-written: a process killed mid-write leaves the old one or the new one, and an
// appended line is on disk before it is counted as written.
import { randomUUID } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, openSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

/**
 * Writes `text` to `path` whole or not at all: into a file beside it, flushed to disk, then renamed over it. Writing
 * in place first empties the file, and a crash then leaves it empty (a batch's recorded job id read as none).
 */
export function replaceFileSync(path: string, text: string): void {
  // Not named by pid alone: two containers sharing a volume are both pid 1, and would write one file.
  const tmp = `${path}.${process.pid}-${randomUUID().slice(0, 8)}.tmp`;
  try {
    const fd = openSync(tmp, 'w');
    try {
      // writeFileSync on a descriptor loops over short writes (a filling disk); one writeSync may write part.
      writeFileSync(fd, text);
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

/**
 * Appends `text` to `path` and flushes it to disk before returning: a results line counted as written survives a
 * power loss (the page cache alone would lose it, or leave a hole of zeros in the middle of the file).
 */
export function appendFileDurablySync(path: string, text: string): void {
  const created = !existsSync(path);
  const fd = openSync(path, 'a');
  try {
    writeFileSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  // A file just made is on disk only once its directory's entry for it is too.
  if (created) {
    const dir = openSync(dirname(path), 'r');
    try {
      fsyncSync(dir);
    } finally {
      closeSync(dir);
    }
  }
}
