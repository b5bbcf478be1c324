/**
 * What this netprobify is and what it was built from. build.ts fixes the build facts in the
 * binary (NETPROBIFY_BUILD, a `define` of the bundler); run from source (`bun src/main.ts`) there
 * is no build, so git is asked for the revision, once, when it is first wanted.
 */
import pkg from "../package.json" with { type: "json" };

/** netprobify's own version, from package.json at build time. */
export const VERSION: string = pkg.version;

/** Set by build.ts; undeclared (typeof "undefined") when running from source. */
declare const NETPROBIFY_BUILD: BuildFacts | undefined;

/** What build.ts records in the binary. */
export interface BuildFacts {
  /** The commit built, 12 hex digits, with "-dirty" when tracked files differed from it. */
  readonly revision: string;
  /** The commit's time (SOURCE_DATE_EPOCH), not the clock's: ISO 8601, UTC, to the second. */
  readonly buildDate: string;
}

export interface BuildInfo extends BuildFacts {
  readonly version: string;
  /** Go's names for the architecture (amd64, arm64), as the exporters' build_info metrics give it. */
  readonly arch: string;
}

/** The state of a git checkout: the commit, its time, and whether tracked files differ from it. */
export interface SourceState {
  readonly commit: string;
  readonly commitTime: number;
  readonly dirty: boolean;
}

/** The checkout holding `dir`, or null when it is none (or git is missing). Untracked files do not count. */
export function sourceState(dir: string): SourceState | null {
  const git = (args: string[]): string | null => {
    try {
      const r = Bun.spawnSync(["git", "-C", dir, ...args], { stdin: "ignore", stdout: "pipe", stderr: "ignore" });
      return r.exitCode === 0 ? r.stdout.toString() : null;
    } catch {
      return null; // no git
    }
  };
  const head = git(["log", "-1", "--format=%H %ct"])?.trim().split(" ");
  const status = git(["status", "--porcelain", "--untracked-files=no"]);
  if (head?.length !== 2 || status === null) return null;
  return { commit: head[0]!, commitTime: Number(head[1]), dirty: status.length > 0 };
}

/** The revision label of a checkout's state: what `--version` and netprobify_build_info show. */
export function revisionOf(state: SourceState): string {
  return state.commit.slice(0, 12) + (state.dirty ? "-dirty" : "");
}

/** Unix seconds as the build date is written: 2025-01-31T12:00:00Z. */
export function isoSeconds(unixSeconds: number): string {
  return new Date(unixSeconds * 1000).toISOString().replace(/\.\d{3}Z$/, "Z");
}

const GO_ARCH: Record<string, string> = { x64: "amd64", arm64: "arm64", ia32: "386", arm: "arm" };

let info: BuildInfo | undefined;

/**
 * This program's build facts. From source: the checkout's revision (or "source" outside one) and
 * no build date, since nothing was built.
 */
export function buildInfo(): BuildInfo {
  if (info) return info;
  let facts: BuildFacts;
  if (typeof NETPROBIFY_BUILD !== "undefined") {
    facts = NETPROBIFY_BUILD;
  } else {
    const state = sourceState(import.meta.dir);
    facts = { revision: state ? revisionOf(state) : "source", buildDate: "" };
  }
  info = { version: VERSION, ...facts, arch: GO_ARCH[process.arch] ?? process.arch };
  return info;
}
