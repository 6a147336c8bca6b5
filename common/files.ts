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
    writeSynced(tmp, 'w', text);
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
  writeSynced(path, 'a', text);
  // A file just made is on disk only once its directory's entry for it is too.
  if (created) writeSynced(dirname(path), 'r');
}

/** Writes `text` (if any) to `path` opened with `flags` and flushes it to disk; 'r' on a directory flushes its entries. */
function writeSynced(path: string, flags: 'w' | 'a' | 'r', text?: string): void {
  const fd = openSync(path, flags);
  try {
    // writeFileSync on a descriptor loops over short writes (a filling disk); one writeSync may write part.
    if (text !== undefined) writeFileSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
