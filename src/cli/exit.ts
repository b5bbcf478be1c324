/**
 * Exit codes (sysexits, as the spec fixes them) and the error that carries one up to main.ts,
 * the only place that calls process.exit.
 */
export const EXIT_OK = 0;
/**
 * A failure sysexits has no code for: an inventory module's process that failed, a fuzzer or
 * benchmark script that found faults.
 */
export const EXIT_FAILURE = 1;
/** `probe`: not a single answer, as ping. */
export const EXIT_NO_ANSWER = EXIT_FAILURE;
export const EXIT_USAGE = 64;
export const EXIT_DATAERR = 65;
export const EXIT_NOINPUT = 66;
/** A destination name that does not resolve. */
export const EXIT_NOHOST = 68;
export const EXIT_UNAVAILABLE = 69;
/** Something failed that should not have: a bug of netprobify's (NETPROBIFY_DEBUG=1 shows the stack). */
export const EXIT_SOFTWARE = 70;
/** The operating system refused something: the metrics port is taken, say. */
export const EXIT_OSERR = 71;
export const EXIT_NOPERM = 77;
/** A script ended by SIGINT or SIGTERM before it finished: 128 + SIGINT, as a shell reports Ctrl-C. */
export const EXIT_INTERRUPTED = 130;

/** A failure with a one-line message for stderr and the exit code it maps to. */
export class ExitError extends Error {
  constructor(
    readonly exitCode: number,
    message: string,
    /** A bad argument: the line points to the command's --help. */
    readonly showUsage = false,
  ) {
    super(message);
    this.name = "ExitError";
  }
}
