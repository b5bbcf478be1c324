/**
 * scripts/bench-config.ts in its quick mode: small files, one run each, so that the script the
 * README's figures come from keeps working. The figures themselves are not asserted.
 */
import { expect, test } from "bun:test";
import { bench, table } from "../../scripts/bench-config.ts";

test("bench-config measures check on a valid and a faulty generated file, each in a fresh process", async () => {
  const rows = await bench({ targets: [150], repeat: 1, timeoutS: 60 });
  expect(rows.map((r) => [r.targets, r.kind, r.runs.length])).toEqual([
    [150, "valid", 1],
    [150, "invalid", 1],
  ]);
  const [valid, invalid] = rows.map((r) => r.runs[0]!);
  expect(valid).toMatchObject({ exitCode: 0, lines: 1, killed: false });
  // 150 faults: the first 100 lines and the count of the other 50.
  expect(invalid).toMatchObject({ exitCode: 65, lines: 101, killed: false });
  for (const run of [valid!, invalid!]) {
    expect(run.wallS).toBeGreaterThan(0);
    expect(run.peakMb).toBeGreaterThan(10);
  }
  const text = table(rows, 60);
  expect(text.split("\n").length).toBe(4);
  expect(text).toContain("| 150 | invalid |");
}, 60_000);
