/**
 * The `file` built-in inventory, in the spirit of Prometheus file_sd: a directory of YAML or JSON
 * files, each a list of targets (InventoryListSchema), published as one list.
 *
 * - Every `*.yaml`, `*.yml` and `*.json` file directly in the directory counts, in name order
 *   (code-unit order, not the locale's). Dotfiles (`.#x.yaml` emacs locks, `..data` of a
 *   Kubernetes ConfigMap) and editor leftovers (`x.yaml~`, `.x.yaml.swp`) are ignored. Symbolic
 *   links are followed, so a ConfigMap mount (whose files are links into `..data`) works.
 * - Changes are seen through fs.watch on the directory, debounced (editors write a file in several
 *   steps), and by a full rescan every 30 s and after any watch error, because watches miss events
 *   (NFS, a directory replaced by another). A file is read again only when its stat (inode, size,
 *   mtime or ctime to the nanosecond) changes, and the list is published only when it differs.
 * - A broken file (YAML or JSON syntax, schema, unreadable, too big, not UTF-8) is reported through
 *   context.reportError as `FILE:LINE:COL: path: message (expected)`, once per distinct problem,
 *   and the other files still apply. The broken file keeps contributing its last good content, if
 *   it had some since this inventory started: half-saved edits must not make targets vanish and
 *   their metrics be deleted. A deleted file's targets are dropped.
 * - A missing directory is reported (once while it stays missing), counts as no files, and is
 *   looked for again every 2 s: it may be created later.
 */
import { watch, type FSWatcher } from "node:fs";
import { readdir, stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import { isScalar, parseDocument } from "yaml";
import { validateValue } from "../config/validate.ts";
import { formatIssue, formatWarnings, parseYamlText } from "../config/validate-yaml.ts";
import { InventoryListSchema, MAX_INVENTORY_TARGETS } from "../config/schema.ts";
import type { LogFields } from "../log.ts";
import type { InventoryContext, InventoryStart, Publish } from "./contract.ts";
import { describeError, errorCode } from "./runner.ts";

/** Largest file read; a bigger one is reported and its last good content kept. */
export const MAX_FILE_BYTES = 16 * 1024 * 1024;
/** Most problems reported for one version of one file; the rest are counted in one more line. */
const MAX_REPORTED_ISSUES = 5;

/** How quickly the inventory reacts; tests shorten these. */
export interface FileTiming {
  /** Quiet time after the last watch event before rescanning. */
  readonly debounceMs: number;
  /** Longest a stream of watch events may postpone the rescan. */
  readonly maxDelayMs: number;
  /** Full rescan period, the safety net for missed watch events. */
  readonly rescanMs: number;
  /** Rescan period while the directory is missing or cannot be watched. */
  readonly retryMs: number;
}

const DEFAULT_FILE_TIMING: FileTiming = { debounceMs: 200, maxDelayMs: 1_000, rescanMs: 30_000, retryMs: 2_000 };

/** Names of the files that hold targets: no dotfiles, no editor backups or swap files. */
export function isTargetFileName(name: string): boolean {
  if (name.startsWith(".") || name.startsWith("#") || name.endsWith("~")) return false;
  return /\.(ya?ml|json)$/i.test(name);
}

/** One file as last seen. */
interface FileState {
  /** Identifies the version read: a different stat means the file must be read again. */
  key: string;
  /** The last good list of this file (raw parsed data); undefined when it never parsed. */
  good: readonly unknown[] | undefined;
  /** The problem lines of the version read, reported once each. */
  problems: ReadonlySet<string>;
}

/** The file inventory with its timing; `start` below is it with the defaults. */
export function fileInventory(timing: Partial<FileTiming> = {}): InventoryStart {
  const t: FileTiming = { ...DEFAULT_FILE_TIMING, ...timing };
  return async (_name, options, publish, context) => {
    const directory = options.directory;
    if (typeof directory !== "string" || directory === "") {
      throw new Error("the file inventory needs a directory option (a non-empty path)");
    }
    await new FileInventory(resolve(context.baseDir, directory), t, publish, context).run();
  };
}

export const start: InventoryStart = fileInventory();

class FileInventory {
  private readonly files = new Map<string, FileState>();
  private watcher: FSWatcher | undefined;
  /** Identity (device, inode, birth time) of the directory watched: another one means it was replaced. */
  private watchedId: string | undefined;
  /** Set by the periodic rescan: make the watch anew, in case it died without saying so. */
  private rewatch = false;
  private directoryProblem: string | undefined;
  private totalProblem: string | undefined;
  private lastPublished: string | undefined;
  private periodic: ReturnType<typeof setTimeout> | undefined;
  private debounce: ReturnType<typeof setTimeout> | undefined;
  private firstEventAt: number | undefined;
  private scanning: Promise<void> | undefined;
  private scanAgain = false;

  constructor(
    private readonly dir: string,
    private readonly timing: FileTiming,
    private readonly publish: Publish,
    private readonly context: InventoryContext,
  ) {}

  /** Scans, then keeps watching until the signal aborts; resolves once everything is closed. */
  async run(): Promise<void> {
    const { signal } = this.context;
    if (signal.aborted) return;
    const stopped = new Promise<void>((done) => signal.addEventListener("abort", () => done(), { once: true }));
    await this.requestScan();
    await stopped;
    this.clearTimers();
    this.closeWatcher();
    // A scan under way finishes (it publishes nothing once aborted) before start() returns.
    await this.scanning;
  }

  /** Runs a scan now, or once more after the one under way. */
  private requestScan(): Promise<void> {
    if (this.scanning) {
      this.scanAgain = true;
      return this.scanning;
    }
    this.scanning = (async () => {
      try {
        do {
          this.scanAgain = false;
          await this.scan();
        } while (this.scanAgain && !this.context.signal.aborted);
      } catch (e) {
        // scan() handles what the file system throws; this is a bug, but must not stop the watch.
        this.report(`${this.dir}: scan failed: ${describe(e)}`);
      } finally {
        this.scanning = undefined;
        this.schedulePeriodic(this.watcher ? this.timing.rescanMs : this.timing.retryMs);
      }
    })();
    return this.scanning;
  }

  /** The safety-net rescan, `ms` after the last scan. */
  private schedulePeriodic(ms: number): void {
    clearTimeout(this.periodic);
    this.periodic = undefined;
    if (this.context.signal.aborted) return;
    this.periodic = setTimeout(() => {
      this.periodic = undefined;
      this.rewatch = true;
      void this.requestScan();
    }, ms);
  }

  /** A watch event: rescan once events stop for debounceMs, or maxDelayMs after the first. */
  private onEvent(): void {
    if (this.context.signal.aborted) return;
    const now = performance.now();
    this.firstEventAt ??= now;
    const wait = Math.max(0, Math.min(this.timing.debounceMs, this.firstEventAt + this.timing.maxDelayMs - now));
    clearTimeout(this.debounce);
    this.debounce = setTimeout(() => {
      this.debounce = undefined;
      this.firstEventAt = undefined;
      void this.requestScan();
    }, wait);
  }

  private clearTimers(): void {
    clearTimeout(this.periodic);
    clearTimeout(this.debounce);
    this.periodic = this.debounce = undefined;
  }

  private async scan(): Promise<void> {
    const names = await this.listDirectory();
    if (names === undefined || this.context.signal.aborted) return;

    const present = new Set(names);
    for (const name of [...this.files.keys()]) if (!present.has(name)) this.files.delete(name);
    for (const name of names) {
      await this.readFile(name);
      if (this.context.signal.aborted) return;
    }

    const targets: unknown[] = [];
    for (const name of [...this.files.keys()].sort(byCodeUnit)) for (const t of this.files.get(name)?.good ?? []) targets.push(t);
    if (targets.length > MAX_INVENTORY_TARGETS) {
      // The prober would refuse the whole list: say why here, and keep the last one published.
      const problem = `${this.dir}: the files hold ${targets.length} targets together, over the limit of ${MAX_INVENTORY_TARGETS}; not published`;
      if (problem !== this.totalProblem) this.report(problem, { directory: this.dir });
      this.totalProblem = problem;
      return;
    }
    this.totalProblem = undefined;
    const text = JSON.stringify(targets);
    if (text === this.lastPublished) return;
    this.lastPublished = text;
    this.context.log("INFO", "publishing targets", { directory: this.dir, targets: targets.length, files: this.files.size });
    this.publish(targets);
  }

  /**
   * The target file names in the directory, with the watch (re)made as needed. A missing
   * directory is no files; undefined when it cannot be read (nothing is changed then).
   */
  private async listDirectory(): Promise<string[] | undefined> {
    let entries: string[];
    try {
      const st = await stat(this.dir, { bigint: true });
      if (!st.isDirectory()) throw Object.assign(new Error("not a directory"), { code: "ENOTDIR" });
      // The birth time tells a re-created directory from the old one when the inode number is reused.
      const id = `${st.dev}:${st.ino}:${st.birthtimeNs}`;
      // The watch is made before the directory is read, so no change can fall between the two.
      if (this.watcher === undefined || this.watchedId !== id || this.rewatch) this.openWatcher(id);
      this.rewatch = false;
      entries = await readdir(this.dir);
    } catch (e) {
      this.closeWatcher();
      const code = errorCode(e);
      const missing = code === "ENOENT" || code === "ENOTDIR";
      const problem = missing
        ? `${this.dir}: the directory ${code === "ENOENT" ? "does not exist" : "is not a directory"}; looking again every ${this.timing.retryMs / 1000} s`
        : `${this.dir}: cannot read the directory: ${describe(e)}`;
      if (problem !== this.directoryProblem) this.report(problem, { directory: this.dir });
      this.directoryProblem = problem;
      return missing ? [] : undefined;
    }
    if (this.directoryProblem !== undefined) {
      this.context.log("INFO", "the directory is readable again", { directory: this.dir });
      this.directoryProblem = undefined;
    }
    return entries.filter(isTargetFileName);
  }

  private openWatcher(id: string): void {
    this.closeWatcher();
    if (this.context.signal.aborted) return;
    try {
      const watcher = watch(this.dir, { persistent: true }, () => this.onEvent());
      watcher.on("error", (e) => {
        if (this.watcher !== watcher) return;
        this.context.log("WARNING", "watching the directory failed; rescanning", { directory: this.dir, error: describe(e) });
        this.closeWatcher();
        this.onEvent();
      });
      this.watcher = watcher;
      this.watchedId = id;
    } catch (e) {
      // No watch (inotify limits reached, say): the retry-period rescans stand in for it.
      this.context.log("WARNING", "cannot watch the directory; rescanning periodically instead", {
        directory: this.dir,
        error: describe(e),
      });
    }
  }

  private closeWatcher(): void {
    const watcher = this.watcher;
    this.watcher = undefined;
    this.watchedId = undefined;
    try {
      watcher?.close();
    } catch {
      // Already closed.
    }
  }

  /** Reads one file again if its stat changed, updating its state and reporting new problems. */
  private async readFile(name: string): Promise<void> {
    const path = join(this.dir, name);
    const previous = this.files.get(name);
    const unreadable = (e: unknown) => {
      // Deleted since readdir: the next scan settles it; a dangling link is no file.
      if (errorCode(e) === "ENOENT") this.files.delete(name);
      else this.update(name, previous, "", { problems: [`${path}: cannot read the file: ${describe(e)}`] });
    };
    let key: string;
    let size: number;
    try {
      const st = await stat(path, { bigint: true });
      if (!st.isFile()) {
        this.files.delete(name);
        return;
      }
      key = `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
      size = Number(st.size);
    } catch (e) {
      unreadable(e);
      return;
    }
    if (previous?.key === key) return;

    if (size > MAX_FILE_BYTES) {
      const problem = `${path}: the file is ${size} bytes, over the limit of ${MAX_FILE_BYTES} bytes; not read`;
      this.update(name, previous, key, { problems: [problem] });
      return;
    }
    let bytes: Uint8Array;
    try {
      // Bounded even if the file grew since stat.
      bytes = new Uint8Array(await Bun.file(path).slice(0, MAX_FILE_BYTES + 1).arrayBuffer());
    } catch (e) {
      unreadable(e);
      return;
    }
    if (bytes.length > MAX_FILE_BYTES) {
      const problem = `${path}: the file is over the limit of ${MAX_FILE_BYTES} bytes; not read`;
      this.update(name, previous, key, { problems: [problem] });
      return;
    }
    let text: string;
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    } catch {
      this.update(name, previous, key, { problems: [`${path}: the file is not UTF-8 text`] });
      return;
    }
    this.update(name, previous, key, parseTargets(text, path));
  }

  /** Records what a file holds now. A broken version keeps the last good list. */
  private update(
    name: string,
    previous: FileState | undefined,
    key: string,
    result: { targets: readonly unknown[]; warnings?: readonly string[] } | { problems: readonly string[] },
  ): void {
    if ("targets" in result) {
      if (previous && previous.problems.size > 0) {
        this.context.log("INFO", "the file is valid again", { file: join(this.dir, name) });
      }
      for (const warning of result.warnings ?? []) this.context.log("WARNING", warning, { file: join(this.dir, name) });
      this.files.set(name, { key, good: result.targets, problems: new Set() });
      return;
    }
    const path = join(this.dir, name);
    const seen = previous?.problems ?? new Set<string>();
    const fresh = result.problems.filter((p) => !seen.has(p));
    const kept = previous?.good?.length;
    const fields = { file: path, kept_targets: kept };
    for (const problem of fresh.slice(0, MAX_REPORTED_ISSUES)) this.report(problem, fields);
    if (fresh.length > MAX_REPORTED_ISSUES) {
      this.report(`${path}: ${fresh.length - MAX_REPORTED_ISSUES} more problems in the file`, fields);
    }
    // An empty key makes the next scan read the file again (a read error may be transient).
    this.files.set(name, { key, good: previous?.good, problems: new Set(result.problems) });
  }

  private report(message: string, fields?: LogFields): void {
    if (!this.context.signal.aborted) this.context.reportError(message, fields);
  }
}

/**
 * Parses one file's text into its targets (the raw data: the prober validates and fills defaults
 * itself) or its problems, each `FILE:LINE:COL: path: message (expected)`. An empty file, or
 * one holding only comments, is an empty list.
 */
export function parseTargets(
  text: string,
  file: string,
): { targets: readonly unknown[]; warnings: readonly string[] } | { problems: readonly string[] } {
  const json = /\.json$/i.test(file);
  if (json) {
    // JSON.parse is some fifty times faster than the YAML parser on a big list; the YAML parser
    // (JSON is YAML 1.2) is only needed to place the problems of a broken file.
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch {
      data = undefined;
    }
    if (data !== undefined && validateValue(InventoryListSchema, data).ok && Array.isArray(data)) {
      return { targets: data, warnings: [] };
    }
  }
  const parsed = parseYamlText(text, file, InventoryListSchema, { yaml11: false });
  if (parsed.ok) {
    const targets = Array.isArray(parsed.data) ? (parsed.data as unknown[]) : [];
    return { targets, warnings: formatWarnings(file, parsed.warnings) };
  }
  if (parsed.issues.length === 1 && isEmptyDocument(text)) return { targets: [], warnings: [] };
  return {
    problems: parsed.issues.map((issue) =>
      formatIssue(json ? { ...issue, message: issue.message.replace(/^YAML syntax error/, "JSON syntax error") } : issue),
    ),
  };
}

/** True for text holding no value: nothing, comments, a bare `---`, `null`. */
function isEmptyDocument(text: string): boolean {
  if (text.trim() === "") return true;
  const doc = parseDocument(text, { version: "1.2" });
  return doc.errors.length === 0 && (doc.contents === null || (isScalar(doc.contents) && doc.contents.value === null));
}

const byCodeUnit = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);


function describe(e: unknown): string {
  const code = errorCode(e);
  if (code === "EACCES" || code === "EPERM") return "permission denied";
  return describeError(e);
}
