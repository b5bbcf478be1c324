/**
 * `netprobify responder` as a child process (from source, as the daemon tests run the daemon),
 * optionally inside a test namespace: started, its listening line awaited, stopped with SIGTERM.
 */
import type { Subprocess } from "bun";
import { MAIN } from "./daemon-process.ts";

export interface ResponderProcess {
  readonly proc: Subprocess<"ignore", "pipe", "pipe">;
  /** Its "reflecting on ..." line. */
  readonly banner: string;
  stop(): Promise<void>;
}

/** Starts `netprobify responder ARGS...` (prefixed by `wrap`, e.g. `ip netns exec NS`); rejects with its output when it exits or says nothing within 10 s. */
export async function startResponderProcess(args: string[], wrap: string[] = []): Promise<ResponderProcess> {
  const proc = Bun.spawn([...wrap, process.execPath, MAIN, "responder", ...args], { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const reader = proc.stdout.getReader();
  let text = "";
  const deadline = setTimeout(() => proc.kill("SIGKILL"), 10_000);
  for (;;) {
    const { value, done } = await reader.read();
    if (value) text += new TextDecoder().decode(value);
    if (text.includes("\n")) break;
    if (done) {
      clearTimeout(deadline);
      throw new Error(`netprobify responder exited (${await proc.exited}): ${text}${await new Response(proc.stderr).text()}`);
    }
  }
  clearTimeout(deadline);
  reader.releaseLock();
  const banner = text.split("\n")[0]!;
  return {
    proc,
    banner,
    async stop() {
      proc.kill("SIGTERM");
      await proc.exited;
    },
  };
}
