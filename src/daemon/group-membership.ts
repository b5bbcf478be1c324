/**
 * Which groups a target sends in: the planner's rule, which the schema also counts an
 * iteration's size by (config/iteration.ts) and the loader warns by, so the three cannot disagree.
 * Pure and import-free, so the config modules can use it without pulling in the planner.
 */

export interface GroupMembershipFields {
  readonly permit_target_auto_register: boolean;
}

export interface TargetMembershipFields {
  readonly auto_register_to_groups: boolean;
  readonly explicit_groups: { readonly register_to: readonly string[]; readonly exclude_from: readonly string[] };
}

/**
 * The groups a target sends in: those it is auto-registered to (both sides willing) or
 * explicitly registered to, less those it is excluded from; exclusion wins. Unknown group
 * names are ignored (the loader warns about them).
 */
export function targetGroups(
  config: { readonly groups: Readonly<Record<string, GroupMembershipFields>> },
  target: TargetMembershipFields,
): string[] {
  const { register_to, exclude_from } = target.explicit_groups;
  // A plain loop: this runs for every target at every load (100,000 of them), where entries,
  // filter and map made four arrays a call.
  const groups: string[] = [];
  for (const name of Object.keys(config.groups)) {
    if (exclude_from.includes(name)) continue;
    const auto = target.auto_register_to_groups && config.groups[name]!.permit_target_auto_register;
    if (auto || register_to.includes(name)) groups.push(name);
  }
  return groups;
}

/**
 * The membership fields of a dynamic target that lists its groups: exactly those, whatever the
 * groups permit (the original's inventories named the groups of their targets this way).
 */
export function onlyInGroups(groups: readonly string[]): {
  auto_register_to_groups: false;
  explicit_groups: { register_to: string[]; exclude_from: string[] };
} {
  return { auto_register_to_groups: false, explicit_groups: { register_to: [...groups], exclude_from: [] } };
}
