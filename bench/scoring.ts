// bench:scoring — fit and score a synthetic shop (default 1,000,000 customers, ~10,000,000 transactions) with every
// model: wall time per model and peak RSS, plus the BG/NBD fit on the CDNOW sample beside a plain Nelder–Mead fit of
// the same likelihood (the baseline), measured in the same run.
//
// The models run on summaries built in memory from the generator's transactions (ingesting ten million events
// through the HTTP pipeline first would measure ingestion, which bench:ingest does).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateShop } from '../src/demo/shop.ts';
import { churnRisk, compress, FeatureEncoder, fitBgNbd, fitCalibrated, fitGammaGamma, lifetimeValue, logLikelihood, predict, probabilityAlive, subset, auc, summarize, type CustomerSummary, type FeatureSpec, type RepeatSummary } from '../src/modules/scoring/index.ts';
import { fitPersonas, rfmSegments, type PersonaInput } from '../src/modules/segments/index.ts';
import { nelderMead } from './support/nelder-mead.ts';

const CUSTOMERS = Number(process.env.BENCH_CUSTOMERS ?? 1_000_000);
const WEEKS = 104;
const CALIBRATION_DAYS = 78 * 7;
const SHOP = { weeks: WEEKS, cohortWeeks: 26, bgnbd: { r: 1.4, alpha: 8, a: 0.6, b: 6 } };
const DATA = join(import.meta.dirname, '..', '..', 'shared', 'data', 'cdnow');

const line = (text: string) => console.log(text);
const secs = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
const timed = <T>(run: () => T): [T, number] => {
  const t0 = performance.now();
  const result = run();
  return [result, performance.now() - t0];
};

// 1. The CDNOW fit against the baseline.
const cdnow = readFileSync(join(DATA, 'cdnow_customers_summary.csv'), 'utf8')
  .trim()
  .split('\n')
  .slice(1)
  .map((l): RepeatSummary => {
    const [, x, tx, T] = l.split(',').map(Number) as [number, number, number, number];
    return { x, tx, T };
  });
const rounds = 5;
const [ours, oursMs] = timed(() => {
  let fit = fitBgNbd(compress(cdnow));
  for (let i = 1; i < rounds; i++) fit = fitBgNbd(compress(cdnow));
  return fit;
});
const perCustomer = { x: Float64Array.from(cdnow, (c) => c.x), tx: Float64Array.from(cdnow, (c) => c.tx), T: Float64Array.from(cdnow, (c) => c.T), weight: new Float64Array(cdnow.length).fill(1), customers: cdnow.length };
const [nm, nmMs] = timed(() => {
  let result = nelderMead((v) => -logLikelihood({ r: Math.exp(v[0] as number), alpha: Math.exp(v[1] as number), a: Math.exp(v[2] as number), b: Math.exp(v[3] as number) }, perCustomer).value, [0, 0, 0, 0]);
  for (let i = 1; i < rounds; i++) result = nelderMead((v) => -logLikelihood({ r: Math.exp(v[0] as number), alpha: Math.exp(v[1] as number), a: Math.exp(v[2] as number), b: Math.exp(v[3] as number) }, perCustomer).value, [0, 0, 0, 0]);
  return result;
});
const p = ours.params;
line(`bench:scoring — CDNOW BG/NBD fit: Candor (BFGS, analytic gradient, grouped summaries) ${(oursMs / rounds).toFixed(1)} ms, LL ${ours.logLikelihood.toFixed(2)} (r=${p.r.toFixed(3)} α=${p.alpha.toFixed(3)} a=${p.a.toFixed(3)} b=${p.b.toFixed(3)})`);
line(`  baseline plain Nelder–Mead on per-customer likelihood ${(nmMs / rounds).toFixed(1)} ms, LL ${(-nm.fx).toFixed(2)}, ${nm.evaluations} evaluations — ${(nmMs / oursMs).toFixed(1)}x slower; published LL −9582.4`);

// 2. The synthetic shop, summarised per customer as it is generated (never all transactions in memory at once).
const [data, prepMs] = timed(() => {
  const summaries: CustomerSummary[] = [];
  const personas: PersonaInput[] = [];
  const lead: Record<string, number>[] = [];
  const converted: number[] = [];
  let transactions = 0;
  for (const c of generateShop({ customers: CUSTOMERS, seed: 2026, ...SHOP })) {
    transactions += c.orders.length;
    const calibration = c.orders.filter((o) => o.day < CALIBRATION_DAYS);
    if (calibration.length === 0) continue;
    const [s] = summarize(calibration.map((o) => ({ customerId: c.id, day: o.day, value: o.total })), { endDay: CALIBRATION_DAYS - 1 });
    if (!s) continue;
    summaries.push(s);
    const weekday = calibration.filter((o) => (Math.floor(o.day) + 2) % 7 < 5).length;
    const morning = calibration.filter((o) => (o.day % 1) * 24 < 12).length;
    personas.push({ orders: s.orders, averageOrder: s.total / s.orders, daysSinceLast: s.daysSinceLast, weekdayShare: weekday / s.orders, morningShare: morning / s.orders });
    lead.push({ orders: s.orders, days: s.daysSinceLast, aov: s.total / s.orders, opened: c.mail.opened, clicked: c.mail.clicked, sessions: c.sessions.filter((x) => x.day < CALIBRATION_DAYS).length });
    converted.push(c.orders.length > calibration.length ? 1 : 0);
  }
  return { summaries, personas, lead, converted, transactions };
});
line(`synthetic shop: ${data.summaries.length.toLocaleString('en-US')} customers with ${data.transactions.toLocaleString('en-US')} transactions, generated and summarised in ${secs(prepMs)}`);

const times: [string, number][] = [];
const [rfm, rfmMs] = timed(() => rfmSegments(data.summaries.map((s) => ({ daysSinceLast: s.daysSinceLast, orders: s.orders, total: s.total }))));
times.push(['RFM segments', rfmMs]);
const [personaModel, personaMs] = timed(() => fitPersonas(data.personas, { kMin: 2, kMax: 8, seed: 1 }));
times.push([`personas (k-means, k=${personaModel.k} by silhouette ${personaModel.silhouette.toFixed(3)})`, personaMs]);
const [bg, bgMs] = timed(() => {
  const fit = fitBgNbd(compress(data.summaries));
  let alive = 0;
  for (const s of data.summaries) alive += probabilityAlive(fit.params, s);
  return { fit, alive };
});
times.push([`BG/NBD fit + P(alive) (r=${bg.fit.params.r.toFixed(3)} α=${bg.fit.params.alpha.toFixed(2)} a=${bg.fit.params.a.toFixed(3)} b=${bg.fit.params.b.toFixed(2)}; true 1.4, 8, 0.6, 6)`, bgMs]);
const [clv, clvMs] = timed(() => {
  const gg = fitGammaGamma(data.summaries);
  let total = 0;
  for (const s of data.summaries) total += lifetimeValue(bg.fit.params, gg.params, s).value;
  return { gg, total };
});
times.push([`Gamma–Gamma fit + 12-month discounted CLV (mean ${(clv.total / data.summaries.length).toFixed(2)})`, clvMs]);
const [, churnMs] = timed(() => {
  let high = 0;
  for (const s of data.summaries) if (churnRisk(bg.fit.params, s).band === 'high') high++;
  return high;
});
times.push(['churn risk with reasons', churnMs]);
const [leadResult, leadMs] = timed(() => {
  const specs: FeatureSpec[] = ['orders', 'days', 'aov', 'opened', 'clicked', 'sessions'].map((name) => ({ name, kind: 'numeric', label: name, category: 'user.behavior', log: true }));
  const encoder = FeatureEncoder.fit(specs, data.lead, () => false);
  const x = encoder.encode(data.lead);
  const all = { x, y: Uint8Array.from(data.converted), n: data.lead.length, d: encoder.columns.length };
  // Trained on a fifth (every fifth customer), scored for everyone, judged on the rest.
  const trainIdx: number[] = [];
  const testIdx: number[] = [];
  for (let i = 0; i < all.n; i++) (i % 5 === 0 ? trainIdx : testIdx).push(i);
  const model = fitCalibrated(subset(all, trainIdx));
  const scores = new Float64Array(all.n);
  for (let i = 0; i < all.n; i++) scores[i] = predict(model, x, i, all.d);
  return auc(testIdx.map((i) => scores[i] as number), testIdx.map((i) => all.y[i] as number));
});
times.push([`lead scores (calibrated logistic regression, holdout AUC ${leadResult.toFixed(3)})`, leadMs]);

let total = 0;
for (const [name, ms] of times) {
  total += ms;
  line(`  ${name}: ${secs(ms)}`);
}
const rssMb = process.resourceUsage().maxRSS / 1024;
line(`all models: ${secs(total)} (goal < 60 s: ${total < 60_000 ? 'PASS' : 'FAIL'}); with data preparation ${secs(total + prepMs)}`);
line(`peak RSS ${rssMb.toFixed(0)} MB (goal < 2048 MB: ${rssMb < 2048 ? 'PASS' : 'FAIL'})`);
line(`segment sizes: ${Object.entries(rfm.sizes).map(([k, v]) => `${k} ${v}`).join(', ')}`);
