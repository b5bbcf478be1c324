/**
 * Worker entry that parses a config file and posts the result back. Parsing a large file with
 * positions leaves far more garbage than the config it yields (10,000 targets: about 120 MB for
 * a 33 MB result); in a Worker that ends right after, the memory goes back to the system at once
 * instead of seconds later, when the engine Workers' first batch would add to it.
 */
import { loadConfigFile } from "./load.ts";

declare const self: Worker;

self.onmessage = async (event: MessageEvent<string>) => {
  self.postMessage(await loadConfigFile(event.data));
};
