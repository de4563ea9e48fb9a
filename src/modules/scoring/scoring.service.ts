import type { AuditEvent, AuditLog } from '../audit/index.ts';
import type { Consent } from '../consent/index.ts';
import { fitPersonas, rfmSegments, explainRfm, type PersonaInput, type PersonaModel, type RfmSegment } from '../segments/index.ts';
import type { Actor } from '../../shared/actor.ts';
import { sortableId } from '../../shared/random.ts';
import type { DataSubject, EraseOutcome, ExportSection, SubjectDataHandler } from '../../shared/subject-data.ts';
import type { SqlExecutor, Storage } from '../../storage/index.ts';
import { compress, fitBgNbd, probabilityAlive, expectedPurchases, type BgNbdParams } from './bgnbd.ts';
import { churnRisk, type ChurnRisk } from './churn.ts';
import { lifetimeValue, DEFAULT_CLV } from './clv.ts';
import { fitGammaGamma, type GammaGammaParams } from './gamma-gamma.ts';
import { ScoringRepo, pendingModelId, purposeOfLineage, type Lineage, type ModelRow, type Owed, type ScoreRow } from './scoring.repo.ts';
import { summarize, type CustomerSummary } from './summary.ts';
import { fourFifths, type FairnessReport } from './fairness.ts';
import { FeatureEncoder, topContributions, type FeatureSpec } from './features.ts';
import { fitCalibrated, predict, stratifiedFolds, subset, type Dataset } from './logistic.ts';
import { auc, brier, reliability } from './metrics.ts';
import { CandorError } from '../../shared/errors.ts';

/** Purposes whose lawful basis lets Candor profile someone; without one of them a person is not scored. */
export const PROFILING_PURPOSES = ['personalize.profiling', 'marketing.advertising.profiling'] as const;

/** What scoring reads, through the modules that own it (wired by the kernel). */
export interface ScoringData {
  /** Every canonical profile with the profiles merged into it, in chunks. */
  people(): AsyncIterable<readonly { profileId: string; members: readonly string[] }[]>;
  /** These profiles as committed now: each one's canonical profile (null once erased) and, if canonical, its members. */
  membership(profileIds: readonly string[]): Promise<ReadonlyMap<string, { canonical: string | null; members: readonly string[] }>>;
  /** Orders of these profiles stored for `purpose` (time and order total, never personal fields). */
  orders(profileIds: readonly string[], purpose: string): Promise<readonly { profileId: string; occurredAt: string; total: number | null }[]>;
  /** Page views and product views of these profiles stored for `purpose` (times only). */
  activity(profileIds: readonly string[], purpose: string): Promise<readonly { profileId: string; occurredAt: string; kind: 'page' | 'product_view' }[]>;
  /** Whether a data category is a special category or protected attribute (never a feature). */
  isProtected(category: string): boolean;
  /** Whether the tracking plan declares this trait for the `fairness_audit` purpose (only those may group an audit). */
  isAuditAttribute(attribute: string): boolean;
  /** The trait's value per person (`owner` maps profile ids to their person), decrypted, for aggregates only. */
  auditGroups(owner: ReadonlyMap<string, string>, attribute: string): Promise<ReadonlyMap<string, string>>;
}

export interface ScoringDeps {
  storage: Storage;
  audit: AuditLog;
  consent: Consent;
  data: ScoringData;
}

export type ModelKind = 'rfm' | 'personas' | 'bgnbd' | 'gamma_gamma' | 'leads';
export const MODEL_KINDS: readonly ModelKind[] = ['rfm', 'personas', 'bgnbd', 'gamma_gamma', 'leads'];

/** What one person's scores are, with the reasons in words. */
export interface ProfileScores {
  rfm?: { recency: number; frequency: number; monetary: number; segment: RfmSegment };
  persona?: { id: number; name: string };
  pAlive?: number;
  expectedOrders90d?: number;
  churn?: { risk: number; band: ChurnRisk['band'] };
  clv?: { value: number; purchases: number; spend: number; months: number };
  /** Probability of an order in the next 90 days (calibrated), and its band. */
  lead?: { probability: number; band: 'hot' | 'warm' | 'cold' };
}

export interface SubjectScores {
  profileId: string;
  profiled: boolean;
  /** Why someone is not profiled ("no consent for profiling", "restricted"), or null. */
  notProfiledReason: string | null;
  computedAt: string | null;
  scores: ScoresView;
  reasons: Reasons;
  models: Record<string, { id: string; version: number }>;
  /** What was masked for a reader who may not read order totals (`clv.value`, `clv.spend`, `reasons.rfm`, `reasons.clv`). */
  masked?: string[];
}

/** Scores as a reader sees them: the money in a lifetime value is null where it is masked. */
export type ScoresView = Omit<ProfileScores, 'clv'> & { clv?: { value: number | null; purchases: number; spend: number | null; months: number } };

type Reasons = Partial<Record<keyof ProfileScores, string>>;

/**
 * The reasons naming an amount of money, and the key of the same reason written without it, stored beside it at the
 * run and shown to staff who may not read order totals (`ProfileService.maskedOrderFigures`).
 */
export const REASONS_WITHOUT_AMOUNTS = { rfm: 'rfmWithoutAmounts', clv: 'clvWithoutAmounts' } as const;
type StoredReasons = Reasons & Partial<Record<(typeof REASONS_WITHOUT_AMOUNTS)[keyof typeof REASONS_WITHOUT_AMOUNTS], string>>;

/** The reasons a stored row shows to one who may read amounts: without the variants written for those who may not. */
function shownReasons(stored: StoredReasons): Reasons {
  const out: StoredReasons = { ...stored };
  for (const key of Object.values(REASONS_WITHOUT_AMOUNTS)) delete out[key];
  return out;
}

/**
 * `scores` and `reasons` with the money masked: a lifetime value's amounts are null, and a reason naming an amount is
 * replaced by its variant without it, or left out when the row was scored before variants were stored.
 */
function withoutAmounts(scores: ProfileScores, stored: StoredReasons): { scores: ScoresView; reasons: Reasons; masked: string[] } {
  const masked: string[] = [];
  const view: ScoresView = { ...scores };
  if (scores.clv) {
    view.clv = { ...scores.clv, value: null, spend: null };
    masked.push('clv.value', 'clv.spend');
  }
  const reasons = shownReasons(stored);
  for (const [key, variant] of Object.entries(REASONS_WITHOUT_AMOUNTS) as [keyof typeof REASONS_WITHOUT_AMOUNTS, string][]) {
    if (reasons[key] === undefined) continue;
    const text = (stored as Record<string, string | undefined>)[variant];
    if (text === undefined) delete reasons[key];
    else reasons[key] = text;
    masked.push(`reasons.${key}`);
  }
  return { scores: view, reasons, masked };
}

export interface RunSummary {
  runId: string;
  at: string;
  people: number;
  profiled: number;
  notProfiled: Record<string, number>;
  buyers: number;
  models: { kind: ModelKind; id: string; version: number; customers: number; skipped?: string }[];
  segments: Partial<Record<RfmSegment, number>>;
  personas: { name: string; description: string; size: number }[];
  seconds: number;
}

export interface RunOptions {
  now?: Date;
  /** Only these models (the others keep their current version, and each person keeps their scores from it, with lineage). */
  models?: readonly ModelKind[];
  onProgress?: (done: number, total: number, stage: string) => void;
  /**
   * Ends the run early (a server stopping): checked between the reads and the fits and once more before the save, it
   * makes the run throw the signal's reason with nothing written. Once the save has begun the run completes.
   */
  signal?: AbortSignal;
}

const DAY_MS = 86_400_000;
const statKeyBg = (s: CustomerSummary) => `${s.x}|${s.tx.toFixed(4)}|${s.T.toFixed(4)}`;
const statKeyGg = (s: CustomerSummary) => `${s.x}|${s.m.toFixed(4)}`;
const money = (v: number) => v.toFixed(2);
const leadBand = (p: number): 'hot' | 'warm' | 'cold' => (p >= 0.5 ? 'hot' : p >= 0.2 ? 'warm' : 'cold');
/** A run's owed check is left to the run itself this long after its save (reconcile takes it over after). */
const RUN_CHECK_GRACE_MS = 10 * 60_000;

/** The stored rows whose purpose still has a lawful basis for their person now (consent loaded in chunks). */
async function lawfulRows<R extends Pick<ScoreRow, 'profile_id' | 'lineage'>>(consent: Consent, rows: readonly R[]): Promise<R[]> {
  const out: R[] = [];
  const at = new Date();
  for (let i = 0; i < rows.length; i += 500) {
    const chunk = rows.slice(i, i + 500);
    await consent.load(chunk.map((r) => r.profile_id));
    for (const row of chunk) if (consent.allowedPurposes(row.profile_id, PROFILING_PURPOSES, at).includes(purposeOfLineage(JSON.parse(row.lineage) as Lineage))) out.push(row);
  }
  return out;
}

/**
 * The scoring job and the purpose-bound read of its results. Only people whose lawful basis covers a profiling
 * purpose (and who are not restricted) enter the fit and get scores; the models keep their sufficient statistics
 * so an erasure removes a person exactly.
 */
export class Scoring {
  readonly #deps: ScoringDeps;
  readonly #repo: ScoringRepo;

  constructor(deps: ScoringDeps) {
    this.#deps = deps;
    this.#repo = new ScoringRepo(deps.storage);
  }

  /** Why this loaded subject may not be profiled, or null when a profiling purpose has a lawful basis. */
  #notProfiledReason(profileId: string, at: Date): string | null {
    const { consent } = this.#deps;
    if (this.#purposeFor(profileId, at) !== undefined) return null;
    const decision = consent.decide(profileId, PROFILING_PURPOSES[0], at);
    return decision.reason;
  }

  /** The profiling purpose a loaded subject's data is read for: the first in PROFILING_PURPOSES that they allow. */
  #purposeFor(profileId: string, at: Date): string | undefined {
    return this.#deps.consent.allowedPurposes(profileId, PROFILING_PURPOSES, at)[0];
  }

  async run(actor: Actor, options: RunOptions = {}): Promise<RunSummary> {
    const started = performance.now();
    const now = options.now ?? new Date();
    const kinds = new Set(options.models ?? MODEL_KINDS);
    const runId = sortableId('run');
    const { consent, data } = this.#deps;
    const endDay = Math.floor(now.getTime() / DAY_MS);
    const { signal } = options;
    signal?.throwIfAborted();

    // 1. Who may be profiled, and for which purpose their data is read (consent and restriction decide, per person, now).
    const eligible: { profileId: string; members: readonly string[]; purpose: string }[] = [];
    const notProfiled: Record<string, number> = {};
    let people = 0;
    for await (const chunk of data.people()) {
      signal?.throwIfAborted();
      await consent.load(chunk.map((p) => p.profileId));
      for (const person of chunk) {
        people++;
        const purpose = this.#purposeFor(person.profileId, now);
        if (purpose !== undefined) eligible.push({ ...person, purpose });
        else {
          const reason = this.#notProfiledReason(person.profileId, now) ?? 'no_record';
          notProfiled[reason] = (notProfiled[reason] ?? 0) + 1;
        }
      }
    }
    options.onProgress?.(0, eligible.length, 'reading orders');

    // 2. Their orders, stored for the purpose each person allows, summarised per person (merged profiles count as one).
    const owner = new Map<string, string>();
    const purposeOf = new Map<string, string>();
    const idsFor = new Map<string, string[]>();
    for (const p of eligible) {
      purposeOf.set(p.profileId, p.purpose);
      const list = idsFor.get(p.purpose) ?? [];
      for (const m of [p.profileId, ...p.members]) {
        owner.set(m, p.profileId);
        list.push(m);
      }
      idsFor.set(p.purpose, list);
    }
    const transactions: { customerId: string; day: number; value: number; hour: number; weekday: boolean }[] = [];
    const chunks = [...idsFor].flatMap(([purpose, list]) => Array.from({ length: Math.ceil(list.length / 500) }, (_, k) => ({ purpose, ids: list.slice(k * 500, k * 500 + 500) })));
    let read = 0;
    for (const chunk of chunks) {
      signal?.throwIfAborted();
      for (const order of await data.orders(chunk.ids, chunk.purpose)) {
        const at = Date.parse(order.occurredAt);
        if (!Number.isFinite(at) || at > now.getTime()) continue;
        const date = new Date(at);
        transactions.push({ customerId: owner.get(order.profileId) as string, day: at / DAY_MS, value: order.total ?? 0, hour: date.getUTCHours(), weekday: date.getUTCDay() >= 1 && date.getUTCDay() <= 5 });
      }
      read += chunk.ids.length;
      options.onProgress?.(read, owner.size, 'reading orders');
    }
    signal?.throwIfAborted();
    const summaries = summarize(transactions, { endDay, unitDays: 7 });
    const timing = new Map<string, { weekday: number; morning: number }>();
    for (const t of transactions) {
      const s = timing.get(t.customerId) ?? { weekday: 0, morning: 0 };
      if (t.weekday) s.weekday++;
      if (t.hour < 12) s.morning++;
      timing.set(t.customerId, s);
    }

    // 3. Fit each model that has enough data; say why when one does not.
    const fitted: { row: ModelRow; stats: Map<string, number> }[] = [];
    const report: RunSummary['models'] = [];
    const at = now.toISOString();
    // Numbered when saved, under the scoring lock: another run may save first (another server, the CLI).
    const modelRow = (kind: ModelKind, params: unknown, details: unknown, customers: number): ModelRow => ({
      id: pendingModelId(kind, runId),
      kind,
      version: 0,
      params: JSON.stringify(params),
      details: JSON.stringify(details),
      customers,
      fitted_at: at,
      current: 1,
      stale: 0,
    });
    const skip = (kind: ModelKind, why: string) => report.push({ kind, id: '', version: 0, customers: 0, skipped: why });

    let rfm: ReturnType<typeof rfmSegments> | undefined;
    let rfmModel: ModelRow | undefined;
    if (kinds.has('rfm') && summaries.length > 0) {
      rfm = rfmSegments(summaries.map((s) => ({ daysSinceLast: s.daysSinceLast, orders: s.orders, total: s.total })));
      rfmModel = modelRow('rfm', rfm.thresholds, { sizes: rfm.sizes }, summaries.length);
      fitted.push({ row: rfmModel, stats: new Map() });
      report.push({ kind: 'rfm', id: rfmModel.id, version: rfmModel.version, customers: summaries.length });
    } else if (kinds.has('rfm')) skip('rfm', 'no orders from profiled customers');

    let personas: PersonaModel | undefined;
    let personaModel: ModelRow | undefined;
    if (kinds.has('personas') && summaries.length >= 30) {
      const inputs: PersonaInput[] = summaries.map((s) => {
        const t = timing.get(s.customerId) ?? { weekday: 0, morning: 0 };
        return { orders: s.orders, averageOrder: s.total / s.orders, daysSinceLast: s.daysSinceLast, weekdayShare: t.weekday / s.orders, morningShare: t.morning / s.orders };
      });
      personas = fitPersonas(inputs, { kMin: 2, kMax: 6, seed: 7 });
      personaModel = modelRow('personas', { k: personas.k, scaling: personas.scaling, centres: personas.personas.map((p) => p.centre) }, { silhouette: personas.silhouette, tried: personas.tried, personas: personas.personas }, summaries.length);
      fitted.push({ row: personaModel, stats: new Map() });
      report.push({ kind: 'personas', id: personaModel.id, version: personaModel.version, customers: summaries.length });
    } else if (kinds.has('personas')) skip('personas', `needs at least 30 buyers (has ${summaries.length})`);

    signal?.throwIfAborted();
    const repeaters = summaries.filter((s) => s.x > 0);
    let bg: BgNbdParams | undefined;
    let bgModel: ModelRow | undefined;
    if (kinds.has('bgnbd') && summaries.length >= 20 && repeaters.length >= 5) {
      const fit = fitBgNbd(compress(summaries));
      bg = fit.params;
      const stats = new Map<string, number>();
      for (const s of summaries) stats.set(statKeyBg(s), (stats.get(statKeyBg(s)) ?? 0) + 1);
      bgModel = modelRow('bgnbd', fit.params, { logLikelihood: fit.logLikelihood, converged: fit.converged, unit: 'weeks' }, summaries.length);
      fitted.push({ row: bgModel, stats });
      report.push({ kind: 'bgnbd', id: bgModel.id, version: bgModel.version, customers: summaries.length });
    } else if (kinds.has('bgnbd')) skip('bgnbd', `needs at least 20 buyers of whom 5 bought again (has ${summaries.length} and ${repeaters.length})`);

    let gg: GammaGammaParams | undefined;
    let ggModel: ModelRow | undefined;
    if (kinds.has('gamma_gamma') && bg && repeaters.length >= 10) {
      const fit = fitGammaGamma(repeaters);
      if (fit.params.q > 1) {
        gg = fit.params;
        const stats = new Map<string, number>();
        for (const s of repeaters) stats.set(statKeyGg(s), (stats.get(statKeyGg(s)) ?? 0) + 1);
        ggModel = modelRow('gamma_gamma', fit.params, { logLikelihood: fit.logLikelihood, converged: fit.converged }, repeaters.length);
        fitted.push({ row: ggModel, stats });
        report.push({ kind: 'gamma_gamma', id: ggModel.id, version: ggModel.version, customers: repeaters.length });
      } else skip('gamma_gamma', 'the fitted spend model has no finite mean (q ≤ 1)');
    } else if (kinds.has('gamma_gamma')) skip('gamma_gamma', bg ? `needs at least 10 repeat buyers (has ${repeaters.length})` : 'needs a BG/NBD model');

    // Lead scores: who is likely to order in the next 90 days, learned from what happened in the last 90.
    let leads: Map<string, { probability: number; reason: string }> | undefined;
    let leadModel: ModelRow | undefined;
    if (kinds.has('leads')) {
      signal?.throwIfAborted();
      const lead = await this.#leads(eligible.map((p) => p.profileId), owner, chunks, transactions, now, signal);
      if ('skipped' in lead) skip('leads', lead.skipped);
      else {
        leads = lead.scores;
        leadModel = modelRow('leads', lead.params, lead.details, lead.trainedOn);
        fitted.push({ row: leadModel, stats: new Map() });
        report.push({ kind: 'leads', id: leadModel.id, version: leadModel.version, customers: lead.trainedOn });
      }
    }

    // 4. Every profiled buyer's scores, with reasons and lineage.
    const scores: ScoreRow[] = [];
    summaries.forEach((s, i) => {
      const out: ProfileScores = {};
      const reasons: StoredReasons = {};
      const models: Record<string, { id: string; version: number }> = {};
      const stats: { modelId: string; key: string }[] = [];
      if (rfm && rfmModel) {
        const r = rfm.results[i] as (typeof rfm.results)[number];
        out.rfm = r;
        const input = { daysSinceLast: s.daysSinceLast, orders: s.orders, total: s.total };
        reasons.rfm = explainRfm(input, r, rfm.thresholds);
        reasons[REASONS_WITHOUT_AMOUNTS.rfm] = explainRfm(input, r, rfm.thresholds, { amounts: false });
        models.rfm = { id: rfmModel.id, version: rfmModel.version };
      }
      if (personas && personaModel) {
        const p = personas.personas[personas.assignments[i] as number];
        if (p) {
          out.persona = { id: p.id, name: p.name };
          reasons.persona = `Persona ${p.name}, the group whose buying habits are closest to yours — typically ${p.description}.`;
          models.personas = { id: personaModel.id, version: personaModel.version };
        }
      }
      if (bg && bgModel) {
        out.pAlive = probabilityAlive(bg, s);
        out.expectedOrders90d = expectedPurchases(bg, s, 90 / 7);
        const churn = churnRisk(bg, s);
        out.churn = { risk: churn.risk, band: churn.band };
        reasons.churn = churn.reason;
        reasons.pAlive = `${Math.round(out.pAlive * 100)}% likely still an active customer, from ${s.orders} order${s.orders === 1 ? '' : 's'} over ${Math.round(s.T * 7)} days, the last ${Math.round(s.daysSinceLast)} days ago.`;
        reasons.expectedOrders90d = `About ${out.expectedOrders90d.toFixed(1)} orders expected in the next 90 days at this customer's pace.`;
        models.bgnbd = { id: bgModel.id, version: bgModel.version };
        stats.push({ modelId: bgModel.id, key: statKeyBg(s) });
      }
      if (bg && gg && ggModel) {
        const clv = lifetimeValue(bg, gg, s);
        out.clv = { value: clv.value, purchases: clv.purchases, spend: clv.spend, months: DEFAULT_CLV.months };
        reasons.clv = `Expected to order about ${clv.purchases.toFixed(1)} times in the next ${DEFAULT_CLV.months} months at about ${money(clv.spend)} per order: worth about ${money(clv.value)} today (future orders discounted ${DEFAULT_CLV.annualDiscount * 100}% a year).`;
        reasons[REASONS_WITHOUT_AMOUNTS.clv] = `Expected to order about ${clv.purchases.toFixed(1)} times in the next ${DEFAULT_CLV.months} months (the amounts are masked).`;
        models.gamma_gamma = { id: ggModel.id, version: ggModel.version };
        if (s.x > 0) stats.push({ modelId: ggModel.id, key: statKeyGg(s) });
      }
      const lead = leads?.get(s.customerId);
      if (lead && leadModel) {
        out.lead = { probability: lead.probability, band: leadBand(lead.probability) };
        reasons.lead = lead.reason;
        models.leads = { id: leadModel.id, version: leadModel.version };
      }
      scores.push({
        profile_id: s.customerId,
        run_id: runId,
        computed_at: at,
        data: JSON.stringify(out),
        reasons: JSON.stringify(reasons),
        lineage: JSON.stringify({ models, stats, purpose: purposeOf.get(s.customerId), summary: { orders: s.orders, firstOrderDay: s.firstDay, lastOrderDay: s.lastDay, total: s.total } } satisfies Lineage),
      });
    });
    // People who browse but never ordered get a lead score only.
    if (leads && leadModel) {
      const buyers = new Set(summaries.map((x) => x.customerId));
      for (const [profileId, lead] of leads) {
        if (buyers.has(profileId)) continue;
        scores.push({
          profile_id: profileId,
          run_id: runId,
          computed_at: at,
          data: JSON.stringify({ lead: { probability: lead.probability, band: leadBand(lead.probability) } } satisfies ProfileScores),
          reasons: JSON.stringify({ lead: lead.reason }),
          lineage: JSON.stringify({ models: { leads: { id: leadModel.id, version: leadModel.version } }, stats: [], purpose: purposeOf.get(profileId), summary: { orders: 0 } } satisfies Lineage),
        });
      }
    }
    // The last point a stop ends the run at: from here the save and what follows it are one unit.
    signal?.throwIfAborted();
    options.onProgress?.(eligible.length, eligible.length, 'saving');
    // One entry per purpose data was read for (the first profiling purpose when nobody was profiled), naming the models
    // as saved (skipped ones have no id); written in the save's transaction.
    const byPurpose = idsFor.size > 0 ? [...idsFor.keys()] : [PROFILING_PURPOSES[0]];
    const entries = (numbered: ReadonlyMap<string, { id: string }>): AuditEvent[] =>
      byPurpose.map((purpose) => ({
        actor: actor.id,
        role: actor.role,
        action: 'scoring.run',
        purpose,
        resource: runId,
        details: { people, profiled: eligible.length, profiledForPurpose: eligible.filter((p) => p.purpose === purpose).length, buyers: summaries.length, models: report.filter((m) => !m.skipped).map((m) => numbered.get(m.id)?.id ?? m.id) },
      }));
    const numbered = await this.#save(runId, fitted, scores, purposeOf, new Map(eligible.map((p) => [p.profileId, p.members])), entries);
    // The summary names the models as saved (skipped ones have no id).
    for (const m of report) Object.assign(m, numbered.get(m.id));
    const summary: RunSummary = {
      runId,
      at,
      people,
      profiled: eligible.length,
      notProfiled,
      buyers: summaries.length,
      models: report,
      segments: rfm ? Object.fromEntries(Object.entries(rfm.sizes).filter(([, n]) => n > 0)) : {},
      personas: personas ? personas.personas.map((p) => ({ name: p.name, description: p.description, size: p.size })) : [],
      seconds: (performance.now() - started) / 1000,
    };
    return summary;
  }

  /**
   * Saves a run's models and scores with the consent in force at save time: a person whose purpose lost its basis
   * since the run began (a withdrawal by another process) is left out and their contribution taken out of the
   * models' statistics before anything is written; and anyone whose basis goes while the save commits is forgotten
   * right after it (a withdrawal's own forget waits for the save and sees its rows). Either way the count-based
   * models equal the fit without them. The run's audit entries (`audit`, given the ids the models were saved under)
   * are appended in the save's transaction, last: a run whose scores are saved always has them, and one whose entries
   * cannot be written saves nothing. The check after the commit is owed from the commit on (a `run` row written in the
   * save's transaction, deleted once it is done): one that does not complete is done by `reconcile`. Answers the id and
   * version each model was saved under.
   */
  async #save(
    runId: string,
    fitted: { row: ModelRow; stats: Map<string, number> }[],
    scores: ScoreRow[],
    purposeOf: Map<string, string>,
    membersOf: ReadonlyMap<string, readonly string[]>,
    audit: (numbered: ReadonlyMap<string, { id: string }>) => AuditEvent[],
  ): Promise<ReadonlyMap<string, { id: string; version: number }>> {
    const { consent, storage } = this.#deps;
    const ids = [...purposeOf.keys()];
    const lapsed = async (): Promise<Set<string>> => {
      await consent.load(ids);
      const at = new Date();
      return new Set(ids.filter((id) => !consent.allowedPurposes(id, PROFILING_PURPOSES, at).includes(purposeOf.get(id) as string)));
    };
    const gone = await lapsed();
    if (gone.size > 0) {
      const byId = new Map(fitted.map((f) => [f.row.id, f]));
      for (let i = scores.length - 1; i >= 0; i--) {
        const row = scores[i] as ScoreRow;
        if (!gone.has(row.profile_id)) continue;
        for (const { modelId, key } of (JSON.parse(row.lineage) as Lineage).stats ?? []) {
          const model = byId.get(modelId);
          const count = model?.stats.get(key);
          if (!model || count === undefined) continue;
          if (count > 1) model.stats.set(key, count - 1);
          else model.stats.delete(key);
          model.row.customers = Math.max(0, model.row.customers - 1);
          model.row.stale = 1;
        }
        scores.splice(i, 1);
      }
      for (const id of gone) purposeOf.delete(id);
    }
    const numbered = await storage.raw.transaction(async (tx) => {
      const saved = await this.#repo.saveRun(tx, fitted, scores, purposeOf);
      // A withdrawal that commits while this transaction runs may not see its rows (PostgreSQL): checked below.
      if (scores.length > 0) await this.#repo.oweRunIn(tx, runId, new Date().toISOString());
      // Last: on PostgreSQL the audit head is held from here to the commit.
      await this.#deps.audit.appendIn(tx, audit(saved.numbered));
      return saved.numbered;
    });
    const late = await lapsed();
    // forgetUnlawful refits what it decremented; the people left out before saving need their own refit.
    if (late.size > 0) await this.forgetUnlawful([...late]);
    if (scores.length > 0) await this.#repo.settleOwed({ kind: 'run', subject: runId, token: runId });
    if (gone.size > 0) await this.refitStale();
    await this.#followMembership(purposeOf, membersOf);
    return numbered;
  }

  /**
   * After a save: a merge or unmerge that committed while the run read and saved had its listener (`merged`,
   * `unmerged`) find no saved row yet (or a row the save then replaced), so the run applies it to what it saved. Either
   * the listener ran after the save committed and saw its rows, or the merge committed before this check, which sees
   * it. Erased people are left to the consent check above (an erased profile has no basis).
   */
  async #followMembership(purposeOf: ReadonlyMap<string, string>, membersOf: ReadonlyMap<string, readonly string[]>): Promise<void> {
    const saved = [...purposeOf.keys()];
    for (let i = 0; i < saved.length; i += 1000) {
      const chunk = saved.slice(i, i + 1000);
      const now = await this.#deps.data.membership(chunk);
      for (const id of chunk) {
        const current = now.get(id);
        if (current === undefined || current.canonical === null) continue;
        if (current.canonical !== id) {
          await this.merged(id, current.canonical);
          continue;
        }
        const still = new Set(current.members);
        for (const member of membersOf.get(id) ?? []) if (!still.has(member)) await this.unmerged(member, id);
      }
    }
  }

  /**
   * The lead model: features of each person as of 90 days ago (orders, days since the last one, spend, product and
   * page views in the 90 days before, tenure) against whether they ordered since; an L2 logistic regression with
   * Platt calibration, judged out of fold (AUC, Brier score, reliability table); then everyone scored on today's
   * features, with the features that moved their score most, in words.
   */
  async #leads(
    people: readonly string[],
    owner: ReadonlyMap<string, string>,
    chunks: readonly { purpose: string; ids: readonly string[] }[],
    transactions: readonly { customerId: string; day: number; value: number }[],
    now: Date,
    signal: AbortSignal | undefined,
  ): Promise<{ skipped: string } | { scores: Map<string, { probability: number; reason: string }>; params: unknown; details: unknown; trainedOn: number }> {
    const WINDOW = 90;
    const nowDay = now.getTime() / DAY_MS;
    const views = new Map<string, number[]>();
    const pages = new Map<string, number[]>();
    for (const chunk of chunks) {
      signal?.throwIfAborted();
      for (const a of await this.#deps.data.activity(chunk.ids, chunk.purpose)) {
        const person = owner.get(a.profileId);
        const at = Date.parse(a.occurredAt) / DAY_MS;
        if (!person || !Number.isFinite(at) || at > nowDay) continue;
        const list = a.kind === 'page' ? pages : views;
        const days = list.get(person) ?? [];
        days.push(at);
        list.set(person, days);
      }
    }
    const orders = new Map<string, { day: number; value: number }[]>();
    for (const t of transactions) {
      const list = orders.get(t.customerId) ?? [];
      list.push({ day: t.day, value: t.value });
      orders.set(t.customerId, list);
    }
    const featuresAt = (person: string, day: number): Record<string, number> | undefined => {
      const before = (orders.get(person) ?? []).filter((o) => o.day < day);
      const v = (views.get(person) ?? []).filter((d) => d < day);
      const p = (pages.get(person) ?? []).filter((d) => d < day);
      const first = Math.min(...before.map((o) => o.day), ...v, ...p);
      if (!Number.isFinite(first)) return undefined; // nothing known about them yet at that time
      const last = Math.max(-Infinity, ...before.map((o) => o.day));
      return {
        orders: before.length,
        days_since_order: Number.isFinite(last) ? day - last : day - first,
        spend: before.reduce((sum, o) => sum + o.value, 0),
        views_90d: v.filter((d) => d >= day - WINDOW).length,
        pages_90d: p.filter((d) => d >= day - WINDOW).length,
        tenure: day - first,
      };
    };
    const specs: FeatureSpec[] = [
      { name: 'orders', kind: 'numeric', label: 'orders so far', category: 'user.behavior.purchase_history', log: true },
      { name: 'days_since_order', kind: 'numeric', label: 'days since the last order', category: 'user.behavior.purchase_history', log: true },
      { name: 'spend', kind: 'numeric', label: 'total spend', category: 'user.behavior.purchase_history', log: true },
      { name: 'views_90d', kind: 'numeric', label: 'product views in the last 90 days', category: 'user.behavior.browsing_history', log: true },
      { name: 'pages_90d', kind: 'numeric', label: 'visits in the last 90 days', category: 'user.behavior.browsing_history', log: true },
      { name: 'tenure', kind: 'numeric', label: 'days since we first saw them', category: 'user.behavior.browsing_history', log: true },
    ];
    const observed = nowDay - WINDOW;
    const train: Record<string, number>[] = [];
    const outcome: number[] = [];
    for (const person of people) {
      const f = featuresAt(person, observed);
      if (!f) continue;
      train.push(f);
      outcome.push((orders.get(person) ?? []).some((o) => o.day >= observed && o.day <= nowDay) ? 1 : 0);
    }
    const positives = outcome.reduce((a, b) => a + b, 0);
    if (train.length < 40 || positives < 5 || train.length - positives < 5) {
      return { skipped: `needs at least 40 people known 90 days ago, with 5 who ordered since and 5 who did not (has ${train.length}, ${positives} ordered)` };
    }
    signal?.throwIfAborted();
    const encoder = FeatureEncoder.fit(specs, train, this.#deps.data.isProtected);
    const data: Dataset = { x: encoder.encode(train), y: Uint8Array.from(outcome), n: train.length, d: encoder.columns.length };
    // Out-of-fold predictions judge the model honestly; the scores come from the model fitted on everyone.
    const folds = stratifiedFolds(data.y, Math.min(5, Math.max(2, Math.floor(Math.min(positives, train.length - positives) / 2))), 11);
    // The base rate is judged the same way: each held-out person gets the order rate of the other folds.
    const oof = new Float64Array(data.n);
    const oofBaseRate = new Float64Array(data.n);
    for (let f = 0; f < folds.length; f++) {
      const test = folds[f] as number[];
      const trainRows = folds.flatMap((fold, g) => (g === f ? [] : fold));
      const model = fitCalibrated(subset(data, trainRows), { lambda: 1, folds: 2 });
      const rate = trainRows.reduce((sum, i) => sum + (data.y[i] as number), 0) / trainRows.length;
      for (const i of test) {
        oof[i] = predict(model, data.x, i, data.d);
        oofBaseRate[i] = rate;
      }
    }
    const model = fitCalibrated(data, { lambda: 1, folds: 3 });
    const scores = new Map<string, { probability: number; reason: string }>();
    const current: { person: string; f: Record<string, number> }[] = [];
    for (const person of people) {
      const f = featuresAt(person, nowDay + 1e-6);
      if (f) current.push({ person, f });
    }
    const x = encoder.encode(current.map((c) => c.f));
    current.forEach(({ person }, i) => {
      const probability = predict(model, x, i, data.d);
      const top = topContributions(encoder, model.weights, x, i, 3);
      const up = top.filter((c) => c.effect > 0).map((c) => c.text);
      const down = top.filter((c) => c.effect < 0).map((c) => c.text);
      const reason =
        `${Math.round(probability * 100)}% likely to order in the next ${WINDOW} days` +
        (up.length > 0 ? `; raised by: ${up.join(', ')}` : '') +
        (down.length > 0 ? `; lowered by: ${down.join(', ')}` : '') +
        '.';
      scores.set(person, { probability, reason });
    });
    return {
      scores,
      trainedOn: train.length,
      params: { intercept: model.intercept, calibration: model.calibration, weights: Object.fromEntries(encoder.columns.map((c, j) => [c.label, model.weights[j] as number])) },
      details: {
        outcome: `ordered within ${WINDOW} days`,
        positives,
        auc: auc(oof, data.y),
        brier: brier(oof, data.y),
        baseRateBrier: brier(oofBaseRate, data.y),
        reliability: reliability(oof, data.y, 5),
      },
    };
  }

  /**
   * One person's scores through a purpose-bound read: when no profiling purpose has a lawful basis now (refused,
   * withdrawn, restricted) the answer is "not profiled" with the reason, whatever is stored.
   */
  async scoresOf(profileId: string, members: readonly string[] = [], options: { amounts?: boolean } = {}): Promise<SubjectScores> {
    const { consent } = this.#deps;
    await consent.load([profileId]);
    const reason = this.#notProfiledReason(profileId, new Date());
    const empty: SubjectScores = { profileId, profiled: false, notProfiledReason: reason, computedAt: null, scores: {}, reasons: {}, models: {} };
    if (reason !== null) return empty;
    const [row] = await this.#repo.scores([profileId, ...members]);
    if (!row) return { ...empty, profiled: true, notProfiledReason: null };
    const lineage = JSON.parse(row.lineage) as Lineage;
    // Computed from data read for a purpose the person no longer allows (they still allow another): not shown.
    if (!consent.allowedPurposes(profileId, PROFILING_PURPOSES).includes(purposeOfLineage(lineage))) return { ...empty, profiled: true, notProfiledReason: null };
    const scores = JSON.parse(row.data) as ProfileScores;
    const reasons = JSON.parse(row.reasons) as StoredReasons;
    const shown = { profileId, profiled: true, notProfiledReason: null, computedAt: row.computed_at, models: lineage.models };
    if (options.amounts !== false) return { ...shown, scores, reasons: shownReasons(reasons) };
    const masked = withoutAmounts(scores, reasons);
    return { ...shown, scores: masked.scores, reasons: masked.reasons, ...(masked.masked.length > 0 ? { masked: masked.masked } : {}) };
  }

  /** The current models with their parameters and what they were fitted on. */
  async models(): Promise<{ id: string; kind: string; version: number; params: unknown; details: unknown; customers: number; fittedAt: string; stale: boolean }[]> {
    return (await this.#repo.currentModels()).map((m) => ({ id: m.id, kind: m.kind, version: m.version, params: JSON.parse(m.params), details: JSON.parse(m.details), customers: Number(m.customers), fittedAt: m.fitted_at, stale: m.stale === 1 }));
  }

  /**
   * Segment sizes, persona descriptions and score distributions (aggregates only), of the stored scores whose purpose
   * still has a lawful basis for their person: a row whose clean-up after a consent change is still owed is not counted.
   */
  async overview(): Promise<{ segments: Record<string, number>; personas: { name: string; description: string; size: number }[]; churnBands: Record<string, number>; clv: { count: number; mean: number; quartiles: [number, number, number] } | null }> {
    const rows = await lawfulRows(this.#deps.consent, await this.#repo.allScores());
    const segments: Record<string, number> = {};
    const personas = new Map<string, number>();
    const churnBands: Record<string, number> = {};
    const clv: number[] = [];
    for (const row of rows) {
      const s = JSON.parse(row.data) as ProfileScores;
      if (s.rfm) segments[s.rfm.segment] = (segments[s.rfm.segment] ?? 0) + 1;
      if (s.persona) personas.set(s.persona.name, (personas.get(s.persona.name) ?? 0) + 1);
      if (s.churn) churnBands[s.churn.band] = (churnBands[s.churn.band] ?? 0) + 1;
      if (s.clv) clv.push(s.clv.value);
    }
    const model = (await this.#repo.currentModels()).find((m) => m.kind === 'personas');
    const described = model ? (JSON.parse(model.details) as { personas: { name: string; description: string }[] }).personas : [];
    clv.sort((a, b) => a - b);
    const q = (f: number) => clv[Math.min(clv.length - 1, Math.floor(f * clv.length))] as number;
    return {
      segments,
      personas: described.map((p) => ({ name: p.name, description: p.description, size: personas.get(p.name) ?? 0 })),
      churnBands,
      clv: clv.length > 0 ? { count: clv.length, mean: clv.reduce((a, b) => a + b, 0) / clv.length, quartiles: [q(0.25), q(0.5), q(0.75)] } : null,
    };
  }

  /**
   * The four-fifths audit of every selection the models make (each RFM segment, each persona, the churn "At risk"
   * band, the "hot" lead band) by an audit attribute: a trait the tracking plan declares for `fairness_audit`, read only for people whose
   * consent covers that purpose, and reported only as aggregates (small groups pooled). Only stored scores whose
   * purpose still has a lawful basis for their person are audited (as in the overview).
   */
  async fairness(attribute: string, actor: Actor): Promise<{ attribute: string; people: number; withGroup: number; reports: FairnessReport[] }> {
    const { consent, data } = this.#deps;
    if (!data.isAuditAttribute(attribute)) throw new CandorError('SCORING_AUDIT_ATTRIBUTE_INVALID', { attribute });
    const scored = new Map((await lawfulRows(consent, await this.#repo.allScores())).map((r) => [r.profile_id, JSON.parse(r.data) as ProfileScores]));
    const owner = new Map<string, string>();
    for await (const chunk of data.people()) {
      const inAudit = chunk.filter((p) => scored.has(p.profileId));
      await consent.load(inAudit.map((p) => p.profileId));
      for (const p of inAudit) {
        if (consent.allowedPurposes(p.profileId, ['fairness_audit']).length === 0) continue;
        for (const id of [p.profileId, ...p.members]) owner.set(id, p.profileId);
      }
    }
    const groups = await data.auditGroups(owner, attribute);
    const people = [...scored];
    const selections: [string, (s: ProfileScores) => boolean][] = [];
    const segments = new Set(people.flatMap(([, s]) => (s.rfm ? [s.rfm.segment] : [])));
    for (const segment of [...segments].sort()) selections.push([`segment:${segment}`, (s) => s.rfm?.segment === segment]);
    const personas = new Set(people.flatMap(([, s]) => (s.persona ? [s.persona.name] : [])));
    for (const persona of [...personas].sort()) selections.push([`persona:${persona}`, (s) => s.persona?.name === persona]);
    selections.push(['churn:high', (s) => s.churn?.band === 'high']);
    selections.push(['lead:hot', (s) => s.lead?.band === 'hot']);
    const reports = selections.map(([name, selected]) => fourFifths(name, attribute, people.map(([id, s]) => ({ group: groups.get(id) ?? null, selected: selected(s) }))));
    await this.#deps.audit.append({
      actor: actor.id,
      role: actor.role,
      action: 'scoring.fairness',
      purpose: 'fairness_audit',
      resource: attribute,
      details: { people: people.length, withGroup: groups.size, selections: reports.length, flagged: reports.filter((r) => !r.passes).map((r) => r.selection) },
    });
    return { attribute, people: people.length, withGroup: groups.size, reports };
  }

  /** Profile ids with a stored score and the scores of each, as stored (whatever consent says now; see overview). */
  async memberships(): Promise<Map<string, ProfileScores>> {
    return new Map((await this.#repo.allScores()).map((r) => [r.profile_id, JSON.parse(r.data) as ProfileScores]));
  }

  /**
   * Removes people from scores and statistics whose scores were computed from data read for a purpose that no longer
   * has a lawful basis for them (withdrawn, refused, restricted), and refits the models their statistics changed:
   * derived data follows its sources. A merged-away profile's scores are removed by the merge (`merged`), so each id
   * here is decided on its own consent.
   */
  async forgetUnlawful(profileIds: readonly string[], at: Date = new Date()): Promise<number> {
    const { consent, storage } = this.#deps;
    let removed = 0;
    for (let i = 0; i < profileIds.length; i += 500) {
      const ids = profileIds.slice(i, i + 500);
      await consent.load(ids);
      const allowed = new Map(ids.map((id) => [id, consent.allowedPurposes(id, PROFILING_PURPOSES, at)]));
      const lapsed = (rows: readonly Pick<ScoreRow, 'profile_id' | 'lineage'>[]) => rows.filter((r) => !(allowed.get(r.profile_id) ?? []).includes(purposeOfLineage(JSON.parse(r.lineage) as Lineage))).map((r) => r.profile_id);
      // Nothing to forget among committed rows (the usual consent change): no write transaction. Rows a run commits
      // meanwhile are checked by that run once saved.
      if (lapsed(await this.#repo.scores(ids)).length === 0) continue;
      // Read again and forgotten in one transaction that waits for a run being saved, so its rows are seen.
      removed += (
        await storage.raw.transaction(async (tx) => {
          await this.#repo.lock(tx);
          return this.#repo.forget(tx, lapsed(await this.#repo.rowsIn(tx, ids)));
        })
      ).scores;
    }
    if (removed > 0) await this.refitStale();
    return removed;
  }

  /**
   * Records, inside a consent change's transaction (`Consent.onChangeIn`), that the stored scores of the people it
   * changes are owed a check against their consent (only people with a stored row): the record commits with the
   * change, so a clean-up that does not run after it (the process stopped, the forget failed) is done by `reconcile`.
   */
  async owedIn(tx: SqlExecutor, profileIds: readonly string[]): Promise<void> {
    await this.#repo.oweIn(tx, profileIds, sortableId('owe'), new Date().toISOString());
  }

  /**
   * Settles clean-ups owed after consent changes: with `profileIds` (right after a change), those people's scores are
   * checked (`forgetUnlawful`); without, every profile recorded as owed (at start and periodically), and every run
   * whose check of the rows it saved did not finish within RUN_CHECK_GRACE_MS (each of its rows checked). Each owed
   * record read is deleted once its check is done, unless a later change recorded it again meanwhile. Answers the
   * number of score rows removed; a failure leaves the records for the next call.
   */
  async reconcile(profileIds?: readonly string[], now: Date = new Date()): Promise<number> {
    if (profileIds !== undefined) {
      const owed: Owed[] = [];
      for (let i = 0; i < profileIds.length; i += 500) owed.push(...(await this.#repo.owed('profile', profileIds.slice(i, i + 500))));
      const removed = await this.forgetUnlawful(profileIds);
      for (const row of owed) await this.#repo.settleOwed(row);
      return removed;
    }
    let removed = 0;
    for (let after = ''; ; ) {
      const owed = await this.#repo.owed('profile', undefined, after);
      const last = owed.at(-1);
      if (last === undefined) break;
      after = last.subject;
      removed += await this.forgetUnlawful(owed.map((o) => o.subject));
      for (const row of owed) await this.#repo.settleOwed(row);
    }
    for (let after = ''; ; ) {
      const runs = await this.#repo.owed('run', undefined, after);
      const last = runs.at(-1);
      if (last === undefined) break;
      after = last.subject;
      for (const run of runs) {
        if (now.getTime() - Date.parse(run.at) < RUN_CHECK_GRACE_MS) continue;
        for (let row = ''; ; ) {
          const ids = await this.#repo.rowsOfRun(run.subject, row, 500);
          const id = ids.at(-1);
          if (id === undefined) break;
          row = id;
          removed += await this.forgetUnlawful(ids);
        }
        await this.#repo.settleOwed(run);
      }
    }
    return removed;
  }

  /**
   * A merge: the merged-away profile's scores and statistics go at once (the person is one customer, scored again
   * as one at the next run), and the surviving profile's too unless the merged person still allows the purpose they
   * were computed for (the most restrictive consent of the two applies).
   */
  async merged(from: string, into: string): Promise<number> {
    const removed = (await this.#repo.scores([from])).length === 0 ? 0 : (await this.#deps.storage.raw.transaction((tx) => this.#repo.forget(tx, [from]))).scores;
    const survivor = await this.forgetUnlawful([into]);
    if (removed > 0 && survivor === 0) await this.refitStale();
    return removed + survivor;
  }

  /**
   * An unmerge: the scores and statistics of both profiles go at once (each was computed with the other's data);
   * both are scored again, apart, at the next run.
   */
  async unmerged(from: string, into: string): Promise<number> {
    if ((await this.#repo.scores([from, into])).length === 0) return 0;
    const removed = await this.#deps.storage.raw.transaction((tx) => this.#repo.forget(tx, [from, into]));
    if (removed.scores > 0) await this.refitStale();
    return removed.scores;
  }

  /** Refits models whose statistics were decremented, from the statistics alone (exactly the model without them). */
  async refitStale(): Promise<string[]> {
    const refitted: string[] = [];
    for (const model of await this.#repo.staleModels()) {
      const stats = await this.#repo.stats(model.id);
      if (model.kind === 'bgnbd') {
        const rows = stats.flatMap(({ key, count }) => {
          const [x, tx, T] = key.split('|').map(Number) as [number, number, number];
          return Array.from({ length: count }, () => ({ x, tx, T }));
        });
        if (rows.length === 0) continue;
        const fit = fitBgNbd(compress(rows));
        await this.#repo.updateParams(model.id, JSON.stringify(fit.params), JSON.stringify({ logLikelihood: fit.logLikelihood, converged: fit.converged, unit: 'weeks', refittedAt: new Date().toISOString() }));
        refitted.push(model.id);
      } else if (model.kind === 'gamma_gamma') {
        const rows = stats.flatMap(({ key, count }) => {
          const [x, m] = key.split('|').map(Number) as [number, number];
          return Array.from({ length: count }, () => ({ x, m }));
        });
        if (rows.length === 0) continue;
        const fit = fitGammaGamma(rows);
        await this.#repo.updateParams(model.id, JSON.stringify(fit.params), JSON.stringify({ logLikelihood: fit.logLikelihood, converged: fit.converged, refittedAt: new Date().toISOString() }));
        refitted.push(model.id);
      }
    }
    return refitted;
  }

  /** Statistics rows of a current model (for tests and the admin API). */
  async statistics(kind: ModelKind): Promise<{ key: string; count: number }[]> {
    const model = (await this.#repo.currentModels()).find((m) => m.kind === kind);
    return model ? this.#repo.stats(model.id) : [];
  }

  /** Registered with rights: scores are exported with their reasons, and erased with the statistics decremented. */
  subjectData(): SubjectDataHandler {
    return {
      module: 'scoring',
      export: async (subject: DataSubject): Promise<ExportSection> => {
        const rows = await this.#repo.scores(subject.profileIds);
        return {
          module: 'scoring',
          title: 'Scores and segments, with their reasons',
          data: rows.map((r) => ({ computedAt: r.computed_at, scores: JSON.parse(r.data) as unknown, reasons: shownReasons(JSON.parse(r.reasons) as StoredReasons), models: (JSON.parse(r.lineage) as { models: unknown }).models })),
          fields: [
            { field: 'scores', category: 'user.behavior.purchase_history', purposes: [...PROFILING_PURPOSES], source: 'candor', recipients: [], retention: null },
            { field: 'reasons', category: 'user.behavior.purchase_history', purposes: [...PROFILING_PURPOSES], source: 'candor', recipients: [], retention: null },
          ],
        };
      },
      erase: async (tx: SqlExecutor, subject: DataSubject): Promise<EraseOutcome[]> => {
        const removed = await this.#repo.forget(tx, subject.profileIds);
        return [
          { store: 'scoring_scores', status: 'confirmed', deleted: removed.scores },
          { store: 'scoring_stats', status: 'confirmed', deleted: removed.statistics, detail: 'model statistics decremented; the models are refitted from them' },
        ];
      },
    };
  }
}
