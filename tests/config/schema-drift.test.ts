import { expect, test } from "bun:test";
import { join } from "node:path";
import { parse } from "yaml";
import { configJsonSchema, renderSchemaYaml, SCHEMA_FILE_HEADER } from "../../src/config/describe.ts";
import { SCHEMA_FILE } from "../../scripts/gen-schema.ts";

test("schema_config.yaml is exactly what scripts/gen-schema.ts generates from the valibot schema", async () => {
  const committed = await Bun.file(SCHEMA_FILE).text();
  // On failure: run `bun run scripts/gen-schema.ts` and commit schema_config.yaml with the schema change.
  expect(committed).toBe(renderSchemaYaml());
});

test("schema_config.yaml says it is generated, and by what", async () => {
  const committed = await Bun.file(SCHEMA_FILE).text();
  expect(committed.startsWith(SCHEMA_FILE_HEADER)).toBe(true);
  expect(SCHEMA_FILE_HEADER).toContain("bun run scripts/gen-schema.ts");
});

test("the committed file parses back to the JSON Schema object", async () => {
  expect(parse(await Bun.file(SCHEMA_FILE).text())).toEqual(configJsonSchema());
});

test("the example config's $schema comment points at schema_config.yaml", async () => {
  const examplePath = join(import.meta.dir, "..", "fixtures", "config", "example.yaml");
  const firstLine = (await Bun.file(examplePath).text()).split("\n")[0] ?? "";
  const relative = firstLine.replace("# yaml-language-server: $schema=", "");
  expect(join(examplePath, "..", relative)).toBe(SCHEMA_FILE);
});
