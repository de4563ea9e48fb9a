import { planWarningOptions, type Kernel } from './kernel.ts';
import { planWarnings, type PlanWarning } from './modules/catalog/index.ts';
import type { PurposeConfig } from './modules/consent/index.ts';
import { isCandorError } from './shared/errors.ts';

/** The command that lists the warnings of the plan in force (docs/ingestion.md, Changing the plan). */
export const LIST_PLAN_WARNINGS = 'candor plan warnings';

/** How many warnings the log line names; the count covers them all. */
const LOGGED = 10;

/** The warnings of the plan in force under the purposes and notice in force. */
export interface PlanWarningSummary {
  readonly planVersion: number;
  /** The notice version in force (0: none published). */
  readonly noticeVersion: number;
  readonly warnings: readonly PlanWarning[];
  /** Of them, about fields (with a `path`) and about events' occurrences (without). */
  readonly fields: number;
  readonly events: number;
}

/**
 * The warnings of a plan version (the one in force) under the purposes and notice in force, as a running server computes
 * them: read leniently, as the server loads a stored version (`candor plan warnings`; `candor plan validate` checks a
 * file strictly, as a publish would).
 */
export async function planWarningSummary(kernel: Pick<Kernel, 'catalog' | 'consent'>, planVersion = kernel.catalog.version(), noticeVersion = currentNoticeVersion(kernel)): Promise<PlanWarningSummary> {
  // The outline of the version is taken at the call, before anything else can be put in force.
  const outline = kernel.catalog.outline(planVersion);
  const options = planWarningOptions(kernel);
  const warnings = planWarnings(await outline, options.purposes ?? [], options.describes, options.aboutTheSystem);
  const events = warnings.filter((w) => w.path === undefined).length;
  return { planVersion, noticeVersion, warnings, fields: warnings.length - events, events };
}

/** The notice version in force (0: none published). */
function currentNoticeVersion(kernel: Pick<Kernel, 'consent'>): number {
  try {
    return kernel.consent.currentNotice().version;
  } catch (error) {
    if (isCandorError(error, 'CONSENT_NOTICE_UNKNOWN')) return 0;
    throw error;
  }
}

/**
 * Tells a running server's log when the tracking plan in force has fields or events the consent gate can never keep, or
 * not for some of their purposes, under the purposes and notice in force (planWarnings): after an upgrade, a publish
 * here or a change another process made. Computed again only when the plan version, the notice version, the
 * configured purposes or the custom taxonomy entries change (never per event); one warning per distinct set, nothing when there is none.
 */
export class PlanWarningWatch {
  readonly #kernel: Pick<Kernel, 'catalog' | 'consent' | 'logger' | 'taxonomy'>;
  /** What the last check was computed from, and its answer. */
  #last: { planVersion: number; noticeVersion: number; purposes: readonly PurposeConfig[]; customEntries: number; summary: PlanWarningSummary } | undefined;
  /** The plan version, notice version and warnings last logged ('' when the last answer had none). */
  #logged = '';

  constructor(kernel: Pick<Kernel, 'catalog' | 'consent' | 'logger' | 'taxonomy'>) {
    this.#kernel = kernel;
  }

  /** The warnings of the plan in force, computed again (and logged once) only when what they depend on changed. */
  async check(): Promise<PlanWarningSummary> {
    const { catalog, consent, logger, taxonomy } = this.#kernel;
    const planVersion = catalog.version();
    const noticeVersion = currentNoticeVersion(this.#kernel);
    // Purposes are frozen objects replaced by every change and reload: the same objects mean the same configuration.
    const purposes = consent.purposes();
    // Custom taxonomy entries are only ever added: a new count is a category a notice may now describe through its parent.
    const customEntries = taxonomy.customCount();
    const last = this.#last;
    if (last && last.planVersion === planVersion && last.noticeVersion === noticeVersion && last.customEntries === customEntries && samePurposes(last.purposes, purposes)) return last.summary;
    const summary = await planWarningSummary(this.#kernel, planVersion, noticeVersion);
    const { warnings, events } = summary;
    this.#last = { planVersion, noticeVersion, purposes, customEntries, summary };
    const logged = warnings.length === 0 ? '' : JSON.stringify([planVersion, noticeVersion, warnings]);
    if (logged !== this.#logged && warnings.length > 0) {
      // Field paths, event names, categories and purpose keys only: the plan's own names, never a value.
      logger.warn(
        {
          planVersion,
          noticeVersion,
          fields: summary.fields,
          events,
          first: warnings.slice(0, LOGGED).map((w) => ({ section: w.section, ...(w.event === undefined ? {} : { event: w.event }), ...(w.path === undefined ? {} : { path: w.path }), warning: w.warning })),
          list: LIST_PLAN_WARNINGS,
        },
        `the tracking plan in force has ${warnings.length} field${warnings.length === 1 ? '' : 's'} or event${warnings.length === 1 ? '' : 's'} the consent gate cannot keep for all of their purposes under the notice in force`,
      );
    }
    this.#logged = logged;
    return summary;
  }
}

function samePurposes(a: readonly PurposeConfig[], b: readonly PurposeConfig[]): boolean {
  return a.length === b.length && a.every((purpose, i) => purpose === b[i]);
}
