/** Running inside the binary `bun build --compile` made, rather than from source. */
const COMPILED = import.meta.url.includes("/$bunfs/");

/**
 * Where a Worker entry lives: inside the compiled binary, `bun build --compile` stores each extra
 * entrypoint under /$bunfs/root/ by its path relative to src/ (import.meta.url there names the
 * binary, not this file); from source, relative to this file, which sits in src/.
 * Every Worker entry must also be listed in build.ts.
 */
export function workerUrl(pathFromSrc: string): string {
  if (COMPILED) return `/$bunfs/root/${pathFromSrc}`;
  return new URL(`./${pathFromSrc}`, import.meta.url).href;
}

/**
 * The command that starts this program again: the compiled binary itself, or Bun with
 * src/main.ts when running from source. Child processes (custom inventories) use it.
 */
export function selfCommand(): string[] {
  if (COMPILED) return [process.execPath];
  // As the compiled binary runs (build.ts): runtime warnings reach the log, not Bun's own print.
  return [process.execPath, "--no-warnings", new URL("./main.ts", import.meta.url).pathname];
}
