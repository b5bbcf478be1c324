/**
 * Where a Worker entry lives: inside the compiled binary, `bun build --compile` stores each extra
 * entrypoint under /$bunfs/root/ by its path relative to src/ (import.meta.url there names the
 * binary, not this file); from source, relative to this file, which sits in src/.
 * Every Worker entry must also be listed in build.ts.
 */
export function workerUrl(pathFromSrc: string): string {
  if (import.meta.url.includes("/$bunfs/")) return `/$bunfs/root/${pathFromSrc}`;
  return new URL(`./${pathFromSrc}`, import.meta.url).href;
}
