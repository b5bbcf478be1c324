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
  return Object.entries(config.groups)
    .filter(([name, group]) => {
      if (exclude_from.includes(name)) return false;
      return (target.auto_register_to_groups && group.permit_target_auto_register) || register_to.includes(name);
    })
    .map(([name]) => name);
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
