/**
 * Worker entry that parses a config file and posts the result back. Parsing a large file leaves
 * more garbage than the config it yields (10,000 generated targets: RSS rises about 30 MB for a
 * result under 10 MB; several times that for a file the yaml package must read); in a Worker
 * that ends right after, the memory goes back to the system at once instead of seconds later,
 * when the engine Workers' first batch would add to it.
 */
import { loadConfigFile } from "./load.ts";

declare const self: Worker;

self.onmessage = async (event: MessageEvent<string>) => {
  self.postMessage(await loadConfigFile(event.data));
};
