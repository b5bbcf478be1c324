/**
 * What both HTTP listeners (the metrics port, the targets API) need from Bun.serve to face
 * unauthenticated clients:
 *
 * - production mode with a last-resort error handler: without them Bun answers an exception
 *   with its development error page (working directory, source lines, stack) and prints the
 *   stack on stderr. `development` defaults to NODE_ENV !== "production", so the compiled
 *   binary ran in development mode;
 * - the request target read without trusting Host: Bun builds `request.url` from the Host
 *   header, and leaves it relative ("/metrics") when Host is absent (HTTP/1.0), empty or not a
 *   host it can use, or makes it unparsable ("http://[::1/metrics") when Host is garbage.
 */
import { describeError } from "./inventory/runner.ts";

/** The only body a 500 carries: what went wrong is for the log, not for the client. */
export const INTERNAL_ERROR_BODY = "internal error\n";

const TEXT = { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" } as const;

export function internalError(): Response {
  return new Response(INTERNAL_ERROR_BODY, { status: 500, headers: TEXT });
}

export function badRequest(reason: string): Response {
  return new Response(`bad request: ${reason}\n`, { status: 400, headers: TEXT });
}

/**
 * A Host value as RFC 3986 writes an authority without userinfo: a registered name (letters,
 * digits, unreserved, sub-delims, percent escapes) or a bracketed IP literal, then an optional
 * port. Two Host headers arrive joined by ", ", which the space makes fail.
 */
const HOST = /^(?:\[[0-9A-Fa-f:.]+\]|(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})*)(?::[0-9]*)?$/;

/** What a 400 says when {@link requestUrl} finds the request malformed. */
export const BAD_HOST = "the Host header is not one host[:port]";

/** Stands for the authority when the request has none: only the path and query are used. */
const NO_AUTHORITY = "http://host.invalid";

/**
 * The request's URL (only its path and query are meant to be used), or undefined when the
 * request is malformed: an invalid Host, or several, as RFC 9112 section 3.2 says (Bun itself
 * answers 400 to HTTP/1.1 without Host, but passes invalid values through). A request without
 * Host (HTTP/1.0) or with an empty one is fine: its URL is relative, resolved against a
 * placeholder. An absolute URL that does not parse was built from a Host that did not.
 */
export function requestUrl(request: Request): URL | undefined {
  const host = request.headers.get("host");
  if (host !== null && !HOST.test(host)) return undefined;
  try {
    return new URL(request.url, NO_AUTHORITY);
  } catch {
    return undefined;
  }
}

/**
 * The options every Bun.serve of the program spreads: production mode, and an error handler
 * for what escapes the fetch handler (each handler catches its own errors; this is the net under
 * it), which reports one line and answers a bare 500.
 */
export function productionServeOptions(report: (message: string) => void): {
  development: false;
  error: (error: Error) => Response;
} {
  return {
    development: false,
    error(error) {
      try {
        report(`HTTP request failed: ${describeError(error)}`);
      } catch {
        // A failing report must not turn into Bun's own answer to a throwing error handler.
      }
      return internalError();
    },
  };
}
