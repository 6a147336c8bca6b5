// Files replaced whole: the old content or the new, and nothing left beside them.
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { appendFileDurablySync, replaceFileSync } from '../../common/files.js';
import { tempDir } from '../helpers/temp.js';

describe('replaceFileSync', () => {
  it('replaces the content and leaves no temporary file beside it', () => {
    const dir = tempDir('muse-files-');
    const path = join(dir, 'results.jsonl.job');
    writeFileSync(path, 'old-job\n');
    replaceFileSync(path, 'new-job\n');
    expect(readFileSync(path, 'utf8')).toBe('new-job\n');
    expect(readdirSync(dir)).toEqual(['results.jsonl.job']);
  });

  it('leaves the old content, and nothing beside it, when the new cannot take its place', () => {
    const dir = tempDir('muse-files-');
    // A directory where the file should be: the rename fails after the new content was written beside it.
    const path = join(dir, 'taken');
    mkdirSync(path);
    writeFileSync(join(path, 'inside'), 'kept');
    expect(() => replaceFileSync(path, 'new')).toThrow(/EISDIR|ENOTEMPTY|EEXIST/);
    expect(readdirSync(dir)).toEqual(['taken']);
    expect(readFileSync(join(path, 'inside'), 'utf8')).toBe('kept');
  });

  it("does not write into another writer's temporary file of the same pid (two containers on one volume are both pid 1)", () => {
    const dir = tempDir('muse-files-');
    const path = join(dir, 'workflow-bundle.js');
    // What the other writer holds open at this moment, named as a pid-only scheme would name this writer's too.
    const theirs = `${path}.${process.pid}.tmp`;
    writeFileSync(theirs, 'their half-written bundle');
    replaceFileSync(path, 'mine');
    expect(readFileSync(path, 'utf8')).toBe('mine');
    expect(readFileSync(theirs, 'utf8')).toBe('their half-written bundle');
  });
});

describe('appendFileDurablySync', () => {
  it('appends after what is there (creating the file), leaving earlier lines as they were', () => {
    const path = join(tempDir('muse-files-'), 'results.jsonl');
    appendFileDurablySync(path, '{"job":"a"}\n');
    appendFileDurablySync(path, '{"job":"b"}\n');
    expect(readFileSync(path, 'utf8')).toBe('{"job":"a"}\n{"job":"b"}\n');
  });
});
