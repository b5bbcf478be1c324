/**
 * Group membership, the planner's rule: which groups a configured or dynamic target sends in.
 */
import { expect, test } from "bun:test";
import { parseConfigText } from "../../src/config/load.ts";
import type { Config } from "../../src/config/schema.ts";
import { onlyInGroups, targetGroups } from "../../src/daemon/group-membership.ts";

function parsed(text: string): Config {
  const result = parseConfigText(text, "t.yaml");
  if (!result.ok) throw new Error(JSON.stringify(result.issues));
  return result.config;
}

const GROUPS = `
global: {probe_name: t, interval: 30, nb_proc: 1, logging_level: INFO, prometheus_port: 8000, dns_update_interval: 0}
groups:
  open: {}
  closed: {permit_target_auto_register: false}
`;

test("targetGroups: auto-registration, register_to, and exclude_from winning over both", () => {
  const config = parsed(`${GROUPS}targets:
  auto: {type: ICMPping, destination: 198.18.0.1}
  invited: {type: ICMPping, destination: 198.18.0.1, explicit_groups: {register_to: [closed]}}
  only-invited: {type: ICMPping, destination: 198.18.0.1, auto_register_to_groups: false, explicit_groups: {register_to: [closed]}}
  excluded: {type: ICMPping, destination: 198.18.0.1, explicit_groups: {register_to: [closed], exclude_from: [closed, open]}}
`);
  const groupsOf = (name: string) => {
    const target = config.targets[name];
    if (!target) throw new Error(name);
    return targetGroups(config, target);
  };
  expect(groupsOf("auto")).toEqual(["open"]);
  expect(groupsOf("invited")).toEqual(["open", "closed"]);
  expect(groupsOf("only-invited")).toEqual(["closed"]);
  expect(groupsOf("excluded")).toEqual([]);
});

test("onlyInGroups (a dynamic target listing its groups): exactly those, auto-registration off, even to a group that refuses it", () => {
  const config = parsed(GROUPS);
  expect(targetGroups(config, onlyInGroups(["closed"]))).toEqual(["closed"]);
  expect(targetGroups(config, onlyInGroups([]))).toEqual([]);
  expect(targetGroups(config, onlyInGroups(["missing", "open"]))).toEqual(["open"]);
});
