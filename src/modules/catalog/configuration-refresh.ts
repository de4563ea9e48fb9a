import type { Taxonomy } from '../taxonomy/index.ts';
import type { Catalog } from './catalog.service.ts';

/** What the consent service does on a refresh (structurally: the catalog does not depend on the consent module). */
interface ConsentConfiguration {
  taxonomyChanged(): void;
  refreshConfigurationIfChanged(): Promise<void>;
}

/** What one refresh found. */
export interface ConfigurationRefresh {
  /** The plan version in force after it. */
  planVersion: number;
  /** Whether custom taxonomy entries this process did not hold were read (the plan in force was compiled again). */
  taxonomyChanged: boolean;
}

/**
 * Reads the configuration another process changed, as a running server does every second and an import before each
 * batch: custom taxonomy entries, then purposes and notices, then the tracking plan, each only after another process
 * wrote. New taxonomy entries are told to what was derived from the taxonomy before them: the consent service's notice
 * look-ups (a category under one a notice lists) and the plan in force, compiled again (a category this process did not
 * know was read as a special category, refused without explicit consent, until then).
 */
export async function refreshConfiguration(deps: { taxonomy: Taxonomy; consent: ConsentConfiguration; catalog: Catalog }): Promise<ConfigurationRefresh> {
  const { taxonomy, consent, catalog } = deps;
  const taxonomyChanged = await taxonomy.refreshIfChanged();
  if (taxonomyChanged) consent.taxonomyChanged();
  await consent.refreshConfigurationIfChanged();
  if (taxonomyChanged) await catalog.taxonomyChanged();
  return { planVersion: await catalog.refreshIfChanged(), taxonomyChanged };
}
