/** The data-use look-up the ancestry walk needs (a `Taxonomy` will do). */
export interface DataUseLookup {
  dataUse(key: string): { key: string; parentKey?: string | null } | undefined;
}

const MAX_HOPS = 20;

/**
 * Whether a data use is one of `roots` or below one of them, by its `parentKey` chain in the taxonomy, so that a
 * custom use (`promo_targeting` under `marketing.advertising`) is classed with its parent. A key on the chain that
 * is a root or starts with `root.` counts too, so a key the taxonomy does not know is judged by its name.
 */
export function isDataUseUnder(uses: DataUseLookup, key: string, roots: readonly string[]): boolean {
  let current: string | null | undefined = key;
  for (let hops = 0; current && hops < MAX_HOPS; hops++) {
    const at: string = current;
    if (roots.some((root) => at === root || at.startsWith(`${root}.`))) return true;
    current = uses.dataUse(at)?.parentKey;
  }
  return false;
}
