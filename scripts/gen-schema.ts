/**
 * Writes schema_config.yaml, the JSON Schema of netprobify.yaml, from the valibot schema in
 * src/config/schema.ts. Run after changing the schema: `bun run scripts/gen-schema.ts`.
 * tests/config/schema-drift.test.ts fails until the committed file matches.
 */
import { join } from "node:path";
import { renderSchemaYaml } from "../src/config/describe.ts";

/** Where the schema file lives: the repository's top level, beside package.json. */
export const SCHEMA_FILE = join(import.meta.dir, "..", "schema_config.yaml");

if (import.meta.main) {
  await Bun.write(SCHEMA_FILE, renderSchemaYaml());
  console.log(`wrote ${SCHEMA_FILE}`);
}
