/**
 * Worker entry of the built-in inventories (api, file, http, dns): a failure in one of them is
 * contained in this Worker, which the supervisor replaces. Listed in build.ts.
 */
import { startApi } from "./api.ts";
import type { InventoryCommand, InventoryMessage, InventorySpec, InventoryStart } from "./contract.ts";
import { start as startDns } from "./dns.ts";
import { start as startFile } from "./file.ts";
import { start as startHttp } from "./http.ts";
import { describeError, runInventory } from "./runner.ts";

declare const self: Worker;

/** The built-ins by kind; the API's listens with the web config's TLS settings, which its spec carries. */
const BUILT_INS: Record<"api" | "file" | "http" | "dns", (spec: InventorySpec) => InventoryStart> = {
  api: (spec) => startApi(spec.listener ?? null),
  file: () => startFile,
  http: () => startHttp,
  dns: () => startDns,
};

const controller = new AbortController();
const send = (m: InventoryMessage) => self.postMessage(m);

self.onmessage = (event: MessageEvent<InventoryCommand>) => {
  const command = event.data;
  if (command.kind === "stop") {
    controller.abort();
    return;
  }
  const { spec } = command;
  const start = spec.kind === "module" ? undefined : BUILT_INS[spec.kind]?.(spec);
  if (!start) {
    send({ kind: "failed", message: `no built-in inventory of kind ${spec.kind}` });
    return;
  }
  runInventory(spec, start, send, controller.signal).catch((e: unknown) => {
    if (!controller.signal.aborted) send({ kind: "failed", message: describeError(e) });
  });
};
