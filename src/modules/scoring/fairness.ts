/**
 * Fairness audit by the four-fifths rule: for a selection (a segment, a campaign audience, a score band) the rate
 * at which each audit group is selected, and its ratio to the most-selected group; a ratio under 0.8 is flagged.
 * Audit groups come only from data collected for the `fairness_audit` purpose, and only aggregates leave here:
 * groups smaller than `minGroup` are merged into "other" so that no small group's members can be singled out.
 */

export interface AuditMember {
  group: string;
  selected: boolean;
}

export interface GroupRate {
  group: string;
  members: number;
  selected: number;
  rate: number;
  /** rate ÷ the highest group's rate. */
  ratio: number;
  flagged: boolean;
}

export interface FairnessReport {
  selection: string;
  attribute: string;
  groups: GroupRate[];
  /** Lowest ratio; under 0.8 fails the four-fifths rule. */
  worstRatio: number;
  passes: boolean;
  /** Members without an audit group (no fairness_audit data): left out of the rates. */
  unknown: number;
}

export function fourFifths(selection: string, attribute: string, members: Iterable<AuditMember | { group: null; selected: boolean }>, minGroup = 10): FairnessReport {
  const counts = new Map<string, { members: number; selected: number }>();
  let unknown = 0;
  for (const m of members) {
    if (m.group === null) {
      unknown++;
      continue;
    }
    const c = counts.get(m.group) ?? { members: 0, selected: 0 };
    c.members++;
    if (m.selected) c.selected++;
    counts.set(m.group, c);
  }
  // Small groups are pooled: a rate over three people would say something about each of them.
  const other = { members: 0, selected: 0 };
  for (const [group, c] of [...counts]) {
    if (c.members < minGroup) {
      other.members += c.members;
      other.selected += c.selected;
      counts.delete(group);
    }
  }
  if (other.members >= minGroup) counts.set('other', other);
  else unknown += other.members;
  const rates = [...counts].map(([group, c]) => ({ group, members: c.members, selected: c.selected, rate: c.selected / c.members }));
  const top = Math.max(0, ...rates.map((r) => r.rate));
  const groups = rates
    .map((r) => {
      const ratio = top > 0 ? r.rate / top : 1;
      return { ...r, ratio, flagged: ratio < 0.8 };
    })
    .sort((a, b) => a.group.localeCompare(b.group));
  const worstRatio = groups.length > 0 ? Math.min(...groups.map((g) => g.ratio)) : 1;
  return { selection, attribute, groups, worstRatio, passes: worstRatio >= 0.8, unknown };
}
