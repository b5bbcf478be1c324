/**
 * Runs netlink.ts calls in whatever network namespace it is started in and prints the results
 * as JSON: the privileged tests start it with `ip netns exec NS`, because a netlink socket answers
 * for the namespace of the thread that opened it.
 *
 * argv[2]: JSON array of [functionName, ...args]. Output: one JSON array, per call either
 * { ok: result } or { error: { name, message } }.
 */
import * as netlink from "../../src/native/netlink.ts";

type Call = [string, ...unknown[]];

const calls = JSON.parse(process.argv[2] ?? "[]") as Call[];
const results = calls.map(([name, ...args]) => {
  const fn = (netlink as unknown as Record<string, unknown>)[name];
  if (typeof fn !== "function") return { error: { name: "TypeError", message: `netlink.${name} is not a function` } };
  try {
    return { ok: (fn as (...a: unknown[]) => unknown)(...args) };
  } catch (e) {
    return { error: { name: e instanceof Error ? e.name : "unknown", message: e instanceof Error ? e.message : String(e) } };
  }
});
process.stdout.write(JSON.stringify(results));
