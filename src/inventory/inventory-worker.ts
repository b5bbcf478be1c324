/**
 * Worker entry of the built-in inventories (api, file, http): a failure in one of them is
 * contained in this Worker, which the supervisor replaces. Listed in build.ts.
 */
import { start as startApi } from "./api.ts";
import type { InventoryCommand, InventoryMessage, InventoryStart } from "./contract.ts";
import { start as startFile } from "./file.ts";
import { start as startHttp } from "./http.ts";
import { describeError, runInventory } from "./runner.ts";

declare const self: Worker;

const BUILT_INS: Record<"api" | "file" | "http", InventoryStart> = { api: startApi, file: startFile, http: startHttp };

const controller = new AbortController();
const send = (m: InventoryMessage) => self.postMessage(m);

self.onmessage = (event: MessageEvent<InventoryCommand>) => {
  const command = event.data;
  if (command.kind === "stop") {
    controller.abort();
    return;
  }
  const { spec } = command;
  const start = spec.kind === "module" ? undefined : BUILT_INS[spec.kind];
  if (!start) {
    send({ kind: "failed", message: `no built-in inventory of kind ${spec.kind}` });
    return;
  }
  runInventory(spec, start, send, controller.signal).catch((e: unknown) => {
    if (!controller.signal.aborted) send({ kind: "failed", message: describeError(e) });
  });
};
