/**
 * Reading a settings file (netprobify.yaml, api.yaml) safely: only a regular file, only up to
 * MAX_CONFIG_FILE_BYTES, never blocking on a FIFO or reading a device forever.
 */
import { constants, type Stats } from "node:fs";
import { open } from "node:fs/promises";
import { MAX_CONFIG_FILE_BYTES } from "./limits.ts";

/** What a file was found to be instead of a regular file. */
function fileKind(st: Stats): string {
  if (st.isDirectory()) return "a directory";
  if (st.isFIFO()) return "a FIFO";
  if (st.isCharacterDevice()) return "a character device";
  if (st.isBlockDevice()) return "a block device";
  if (st.isSocket()) return "a socket";
  return "not a regular file";
}

/**
 * The text of a settings file (netprobify.yaml, api.yaml), or why it cannot be had: only a
 * regular file of at most MAX_CONFIG_FILE_BYTES is read. The file is opened without blocking (a
 * FIFO would wait for a writer forever) and examined with fstat before a byte is read (a device
 * such as /dev/zero would never end); a file that grows meanwhile is still cut off at the limit.
 * @returns The text, or `failure`: a few words ("no such file", "it is a FIFO, not a regular file").
 */
export async function readSettingsFile(path: string): Promise<{ text: string } | { failure: string; code?: string }> {
  let file: Awaited<ReturnType<typeof open>>;
  try {
    file = await open(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (error) {
    const code = typeof error === "object" && error !== null ? (error as { code?: unknown }).code : undefined;
    return { failure: readFailure(error), ...(typeof code === "string" ? { code } : {}) };
  }
  const tooLarge = (size: string) =>
    `it is ${size} bytes, over the limit of ${MAX_CONFIG_FILE_BYTES.toLocaleString("en-US")} (${MAX_CONFIG_FILE_BYTES / 1024 / 1024} MiB)`;
  try {
    const st = await file.stat();
    if (st.isDirectory()) return { failure: "it is a directory", code: "EISDIR" };
    if (!st.isFile()) return { failure: `it is ${fileKind(st)}, not a regular file` };
    if (st.size > MAX_CONFIG_FILE_BYTES) return { failure: tooLarge(st.size.toLocaleString("en-US")) };
    let buffer = Buffer.allocUnsafe(st.size + 1);
    let length = 0;
    for (;;) {
      if (length === buffer.length) {
        if (length > MAX_CONFIG_FILE_BYTES) return { failure: tooLarge(`more than ${MAX_CONFIG_FILE_BYTES.toLocaleString("en-US")}`) };
        const grown = Buffer.allocUnsafe(Math.min(buffer.length * 2, MAX_CONFIG_FILE_BYTES + 1));
        buffer.copy(grown, 0, 0, length);
        buffer = grown;
      }
      const { bytesRead } = await file.read(buffer, length, buffer.length - length, null);
      if (bytesRead === 0) break;
      length += bytesRead;
    }
    return { text: buffer.toString("utf8", 0, length) };
  } catch (error) {
    return { failure: readFailure(error) };
  } finally {
    await file.close();
  }
}

export function readFailure(error: unknown): string {
  const code = typeof error === "object" && error !== null ? (error as { code?: unknown }).code : undefined;
  switch (code) {
    case "ENOENT":
      return "no such file";
    case "EACCES":
    case "EPERM":
      return "permission denied";
    case "EISDIR":
      return "it is a directory";
    default:
      return error instanceof Error ? error.message : String(error);
  }
}

