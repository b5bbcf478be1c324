/**
 * Which files a privileged process (root, or holding capabilities, such as the binary with
 * `setcap cap_net_raw+ep`) may load code from: files owned by root or by the owner of its own
 * executable and not writable by group or others, in directories that are the same all the way up
 * to "/", as ssh and sudo require of their files. Anything else could have been written by another
 * user, who would then run code with the prober's privilege.
 *
 * A world-writable directory with the sticky bit (/tmp) is accepted above the file when a trusted
 * user owns it: nobody else can rename or remove a trusted user's entries there. It is never
 * accepted as the directory whose listing decides which modules run.
 */
import { closeSync, constants, fstatSync, lstatSync, openSync, readFileSync, realpathSync, statSync, type Stats } from "node:fs";
import { dirname } from "node:path";

/** "ENOENT", or the error as text. */
function why(e: unknown): string {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : String(e);
}

const WRITABLE_BY_GROUP_OR_OTHERS = 0o022;
const STICKY = 0o1000;

/** A file or directory a privileged process refuses to load code from; the message says why. */
export class UntrustedCode extends Error {
  constructor(
    readonly path: string,
    /** What is wrong, naming the file or directory at fault: "/srv/mods is writable by others (mode 0777)". */
    readonly reason: string,
  ) {
    super(`${path}: not loaded: ${reason}; ${trustRule()}`);
    this.name = "UntrustedCode";
  }
}

let owners: ReadonlySet<number> | undefined;

/** root, and the owner of the running executable (the compiled binary, or Bun from source). */
export function trustedOwners(): ReadonlySet<number> {
  if (!owners) {
    let binaryOwner = 0;
    try {
      binaryOwner = statSync(process.execPath).uid;
    } catch {
      // Gone or unreadable: root alone.
    }
    owners = new Set([0, binaryOwner]);
  }
  return owners;
}

function trustRule(): string {
  const others = [...trustedOwners()].filter((uid) => uid !== 0);
  const who = others.length > 0 ? `root or ${others.map(userName).join(", ")} (the owner of ${process.execPath})` : "root";
  return (
    `a prober running as root or with capabilities loads code only from files and directories owned by ${who} ` +
    `and not writable by group or others`
  );
}

/** "nobody (uid 65534)", or "uid 65534" when /etc/passwd does not name it. */
function userName(uid: number): string {
  try {
    const line = readFileSync("/etc/passwd", "utf8")
      .split("\n")
      .find((l) => l.split(":")[2] === String(uid));
    if (line) return `${line.split(":")[0]} (uid ${uid})`;
  } catch {
    // No passwd file: the number alone.
  }
  return `uid ${uid}`;
}

function modeText(st: Stats): string {
  return `mode 0${(st.mode & 0o7777).toString(8)}`;
}

/** Why a file or directory with these attributes is not trusted, or null. */
function ownershipReason(path: string, st: Stats, allowSticky: boolean): string | null {
  if (!trustedOwners().has(st.uid)) return `${path} is owned by ${userName(st.uid)}`;
  const writable = st.mode & WRITABLE_BY_GROUP_OR_OTHERS;
  if (writable === 0 || (allowSticky && st.isDirectory() && (st.mode & STICKY) !== 0)) return null;
  return `${path} is writable by ${writable & 0o002 ? "others" : "its group"} (${modeText(st)})`;
}

/** `dir` (a real path) and every directory above it; `strict`: `dir` itself may not be sticky-writable. */
function directoriesReason(dir: string, strict: boolean): string | null {
  for (let d = dir, first = true; ; first = false) {
    let st: Stats;
    try {
      st = lstatSync(d);
    } catch (e) {
      return `${d} cannot be read (${why(e)})`;
    }
    // A real path has no links: one now means the path changed under us.
    if (!st.isDirectory()) return `${d} is not a directory`;
    const reason = ownershipReason(d, st, !(strict && first));
    if (reason) return reason;
    const up = dirname(d);
    if (up === d) return null;
    d = up;
  }
}

function realPath(path: string): string {
  try {
    return realpathSync(path);
  } catch (e) {
    throw new UntrustedCode(path, `it cannot be read (${why(e)})`);
  }
}

/**
 * A directory whose every file is code to run (the modules directory): throws UntrustedCode when
 * it, or one above it, could have been written by an untrusted user.
 */
export function checkCodeDirectory(dir: string): void {
  const reason = directoriesReason(realPath(dir), true);
  if (reason) throw new UntrustedCode(dir, reason);
}

function fileReason(path: string, st: Stats): string | null {
  if (!st.isFile()) return `${path} is not a regular file`;
  return ownershipReason(path, st, false);
}

/** Throws UntrustedCode when `file` or a directory above it could have been written by an untrusted user. */
export function checkCodeFile(file: string): void {
  const real = realPath(file);
  const reason = directoriesReason(dirname(real), false) ?? fileReason(real, lstatSync(real));
  if (reason) throw new UntrustedCode(file, reason);
}

/**
 * Reads a code file for a privileged process: the directories are checked, then the file is
 * opened without following links and its owner and mode are checked on the open descriptor, so the
 * bytes returned are those of the file that was checked. Throws UntrustedCode.
 */
export function readCodeFile(file: string): { path: string; contents: Buffer } {
  const real = realPath(file);
  const dirReason = directoriesReason(dirname(real), false);
  if (dirReason) throw new UntrustedCode(file, dirReason);
  let fd: number;
  try {
    fd = openSync(real, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (e) {
    throw new UntrustedCode(file, `it cannot be opened (${why(e)})`);
  }
  try {
    const reason = fileReason(real, fstatSync(fd));
    if (reason) throw new UntrustedCode(file, reason);
    return { path: real, contents: readFileSync(fd) };
  } finally {
    closeSync(fd);
  }
}
