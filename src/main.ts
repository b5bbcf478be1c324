/** Process entry: the only place that exits. */
import { EXIT_SOFTWARE } from "./cli/exit.ts";
import { runCli } from "./cli/index.ts";

const code = await runCli(
  process.argv.slice(2),
  (line) => process.stdout.write(`${line}\n`),
  (line) => process.stderr.write(`${line}\n`),
).catch((e: unknown) => {
  // Anything unexpected still ends as one line, never a stack trace (NETPROBIFY_DEBUG=1 shows it).
  const err = e instanceof Error ? e : new Error(String(e));
  process.stderr.write(`netprobify: ${err.message}\n`);
  if (process.env.NETPROBIFY_DEBUG) process.stderr.write(`${err.stack}\n`);
  return EXIT_SOFTWARE;
});
process.exit(code);
