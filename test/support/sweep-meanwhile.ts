// What another server does while a retention sweep runs: a hook on the plan's declarations, the first thing a sweep's
// plan rules read.
import type { Catalog } from '../../src/modules/catalog/index.ts';

/**
 * Runs `sweep` with `meanwhile` run once, right after the `nth` call of `catalog.declarations()` made from a module whose
 * file name holds `module` (`profiles.retention`, `collect.retention`): between the sweep's reading of its rules and its
 * first batch. Answers whether it ran.
 */
export async function sweepWhile(catalog: Catalog, module: string, meanwhile: () => Promise<unknown>, sweep: () => Promise<unknown>, nth = 1): Promise<boolean> {
  const original = catalog.declarations.bind(catalog);
  let calls = 0;
  let ran = false;
  (catalog as { declarations: typeof catalog.declarations }).declarations = async () => {
    const answer = await original();
    if (!ran && (new Error().stack ?? '').includes(module) && ++calls === nth) {
      ran = true;
      await meanwhile();
    }
    return answer;
  };
  try {
    await sweep();
  } finally {
    (catalog as { declarations: typeof catalog.declarations }).declarations = original;
  }
  return ran;
}
