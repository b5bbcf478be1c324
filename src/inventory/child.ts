/**
 * A custom inventory's child process: `netprobify __inventory`, the same binary started by the
 * supervisor with an IPC channel. It loads the module named by the "start" command and runs it;
 * whatever the module does (throw, loop forever, exhaust its heap) ends here, never in the prober.
 */
import type { InventoryCommand, InventoryMessage, InventoryStart } from "./contract.ts";
import { describeError, runInventory } from "./runner.ts";

/** How long a stopping module gets to close its sockets before the process exits anyway. */
const STOP_GRACE_MS = 1_000;

export function runInventoryChild(): Promise<number> {
  return new Promise((resolve) => {
    if (!process.send) {
      process.stderr.write("netprobify: __inventory is started by the prober, not by hand\n");
      resolve(64);
      return;
    }
    const controller = new AbortController();
    const send = (m: InventoryMessage) => {
      try {
        process.send!(m);
      } catch {
        // The prober is gone: the disconnect handler below ends this process.
      }
    };
    const fail = (message: string) => {
      send({ kind: "failed", message });
      // Let the IPC message leave before exiting.
      setTimeout(() => resolve(1), 50);
    };
    process.on("uncaughtException", (e) => fail(`uncaught: ${describeError(e)}`));
    process.on("unhandledRejection", (e) => fail(`unhandled rejection: ${describeError(e)}`));
    // No orphans: when the prober goes, so does every inventory.
    process.on("disconnect", () => resolve(0));
    process.on("message", (command: InventoryCommand) => {
      if (command.kind === "stop") {
        controller.abort();
        setTimeout(() => resolve(0), STOP_GRACE_MS);
        return;
      }
      const { spec } = command;
      void (async () => {
        let start: unknown;
        try {
          const mod = (await import(spec.modulePath!)) as { start?: unknown; default?: { start?: unknown } };
          start = mod.start ?? mod.default?.start;
        } catch (e) {
          fail(`cannot load ${spec.modulePath}: ${describeError(e)}`);
          return;
        }
        if (typeof start !== "function") {
          fail(`${spec.modulePath} exports no start function`);
          return;
        }
        try {
          await runInventory(spec, start as InventoryStart, send, controller.signal);
        } catch (e) {
          if (!controller.signal.aborted) fail(describeError(e));
        }
      })();
    });
  });
}
