/** How a kept field is treated when an event is split for storage. */
export interface FieldRule {
  personal: boolean;
  /** False when no purpose of the field has a lawful basis for this person: the field is not stored. */
  allowed: boolean;
}

export interface Partitioned {
  /** Fields stored in clear: not personal. */
  plain: Record<string, unknown>;
  /** Personal fields, stored in one envelope encrypted with the person's data key. */
  personal: Record<string, unknown>;
  /** Paths of fields left out because no purpose of theirs is allowed. */
  refused: string[];
  personalCount: number;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Splits minimized event data into a plain part and a personal part by the field rules of the tracking plan
 * (paths like `traits.email` or `properties.products[].price`), leaving out refused fields. Arrays of objects keep
 * their positions in both parts so they can be put back together.
 */
export function partition(data: Record<string, unknown>, rules: ReadonlyMap<string, FieldRule>): Partitioned {
  const refused = new Set<string>();
  let personalCount = 0;
  const walk = (value: unknown, path: string): { plain: unknown; personal: unknown } => {
    if (Array.isArray(value)) {
      const scalarRule = value.every((item) => !isObject(item) && !Array.isArray(item)) ? (rules.get(path) ?? rules.get(`${path}[]`)) : undefined;
      if (scalarRule) {
        // An array of scalars is annotated as a whole.
        if (!scalarRule.allowed) {
          refused.add(path);
          return { plain: undefined, personal: undefined };
        }
        if (scalarRule.personal) personalCount++;
        return scalarRule.personal ? { plain: undefined, personal: value } : { plain: value, personal: undefined };
      }
      const plain: unknown[] = [];
      const personal: unknown[] = [];
      let anyPlain = false;
      let anyPersonal = false;
      for (const item of value) {
        const part = walk(item, `${path}[]`);
        plain.push(part.plain ?? null);
        personal.push(part.personal ?? null);
        anyPlain ||= part.plain !== undefined;
        anyPersonal ||= part.personal !== undefined;
      }
      return { plain: anyPlain ? plain : undefined, personal: anyPersonal ? personal : undefined };
    }
    if (isObject(value)) {
      const plain: Record<string, unknown> = {};
      const personal: Record<string, unknown> = {};
      let anyPlain = false;
      let anyPersonal = false;
      for (const [key, inner] of Object.entries(value)) {
        const part = walk(inner, path ? `${path}.${key}` : key);
        if (part.plain !== undefined) {
          plain[key] = part.plain;
          anyPlain = true;
        }
        if (part.personal !== undefined) {
          personal[key] = part.personal;
          anyPersonal = true;
        }
      }
      return { plain: anyPlain ? plain : undefined, personal: anyPersonal ? personal : undefined };
    }
    const rule = rules.get(path);
    // The plan already dropped undeclared fields; a leaf without a rule is treated as personal, the safe side.
    if (rule && !rule.allowed) {
      refused.add(path);
      return { plain: undefined, personal: undefined };
    }
    if (!rule || rule.personal) {
      personalCount++;
      return { plain: undefined, personal: value };
    }
    return { plain: value, personal: undefined };
  };
  const out = walk(data, '');
  return {
    plain: (out.plain as Record<string, unknown> | undefined) ?? {},
    personal: (out.personal as Record<string, unknown> | undefined) ?? {},
    refused: [...refused],
    personalCount,
  };
}
