/**
 * The open TCP port of a test host: run inside the host's namespace by testnet.ts as
 * `ip netns exec NS bun tcp-listener.ts PORT`. Listens on IPv4 and IPv6 separately (v6-only
 * socket) so both families are served whatever net.ipv6.bindv6only says, accepts and closes.
 *
 * Prints "ready" once both sockets listen, and exits when its stdin closes: the parent keeps
 * the pipe open, so a parent that dies without cleaning up (SIGKILL) does not leave a listener
 * pinning the namespace alive.
 */
import { createServer, type Server } from "node:net";
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE } from "../../src/cli/exit.ts";

const port = Number(process.argv[2] ?? "8443");
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error(`tcp-listener: bad port "${process.argv[2]}"`);
  process.exit(EXIT_USAGE);
}

function listen(host: string, ipv6Only: boolean): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer((socket) => {
      socket.on("error", () => {});
      socket.destroy();
    });
    server.once("error", (e) => reject(new Error(`listen on [${host}]:${port}: ${e.message}`)));
    // Bun caps the backlog itself; syncookies in the namespace answer SYNs beyond it.
    server.listen({ host, port, ipv6Only, backlog: 65535 }, () => resolve(server));
  });
}

try {
  await listen("0.0.0.0", false);
  await listen("::", true);
} catch (e) {
  console.error(`tcp-listener: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(EXIT_FAILURE);
}
process.stdout.write("ready\n");
process.stdin.on("end", () => process.exit(EXIT_OK));
process.stdin.on("close", () => process.exit(EXIT_OK));
process.stdin.resume();
