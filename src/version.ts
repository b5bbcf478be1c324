import pkg from "../package.json" with { type: "json" };

/** netprobify's own version, from package.json at build time. */
export const VERSION: string = pkg.version;
