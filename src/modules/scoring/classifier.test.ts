import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { parse } from 'csv-parse/sync';
import { readReference } from '../../../test/support/reference-data.ts';
import { isCandorError } from '../../shared/errors.ts';
import { FeatureEncoder, topContributions, type FeatureSpec } from './features.ts';
import { fitCalibrated, fitLogistic, linearScore, predict, stratifiedFolds, subset, type Dataset } from './logistic.ts';
import { auc, brier, reliability } from './metrics.ts';

type Row = Record<string, string>;
// What our taxonomy marks protected (special categories and protected attributes): never features.
const PROTECTED = new Set(['user.demographic.gender', 'user.demographic.age_range', 'user.demographic.marital_status', 'user.demographic.race_ethnicity']);
const isProtected = (category: string) => PROTECTED.has(category);

/** 5-fold stratified cross-validated AUC, the encoder fitted on each training part only. */
function crossValidatedAuc(rows: readonly Row[], specs: readonly FeatureSpec[], outcome: (r: Row) => number, lambda: number): { auc: number; brier: number; predictions: Float64Array; y: Uint8Array } {
  const y = Uint8Array.from(rows.map(outcome));
  const folds = stratifiedFolds(y, 5, 42);
  const predictions = new Float64Array(rows.length);
  for (let f = 0; f < folds.length; f++) {
    const testIdx = folds[f] as number[];
    const trainIdx = folds.flatMap((fold, g) => (g === f ? [] : fold));
    const trainRows = trainIdx.map((i) => rows[i] as Row);
    const encoder = FeatureEncoder.fit(specs, trainRows, isProtected);
    const d = encoder.columns.length;
    const train: Dataset = { x: encoder.encode(trainRows), y: Uint8Array.from(trainIdx.map((i) => y[i] as number)), n: trainIdx.length, d };
    const model = fitCalibrated(train, { lambda });
    const testX = encoder.encode(testIdx.map((i) => rows[i] as Row));
    testIdx.forEach((row, k) => (predictions[row] = predict(model, testX, k, d)));
  }
  return { auc: auc(predictions, y), brier: brier(predictions, y), predictions, y };
}

const telcoSpecs: FeatureSpec[] = [
  { name: 'tenure', kind: 'numeric', label: 'months as a customer', category: 'user.behavior.purchase_history' },
  { name: 'MonthlyCharges', kind: 'numeric', label: 'monthly charges', category: 'user.financial' },
  { name: 'TotalCharges', kind: 'numeric', label: 'total charges', category: 'user.financial', log: true },
  ...['Dependents', 'PhoneService', 'MultipleLines', 'InternetService', 'OnlineSecurity', 'OnlineBackup', 'DeviceProtection', 'TechSupport', 'StreamingTV', 'StreamingMovies', 'Contract', 'PaperlessBilling', 'PaymentMethod'].map(
    (name): FeatureSpec => ({ name, kind: 'categorical', label: name.replace(/([a-z])([A-Z])/g, '$1 $2').toLowerCase(), category: name === 'Dependents' ? 'user.demographic.profile' : 'user.behavior.purchase_history' }),
  ),
];

const bankSpecs: FeatureSpec[] = [
  ...['job', 'education', 'default', 'housing', 'loan', 'contact', 'month', 'day_of_week', 'poutcome'].map(
    (name): FeatureSpec => ({ name, kind: 'categorical', label: name.replace(/_/g, ' '), category: ['default', 'housing', 'loan'].includes(name) ? 'user.financial' : name === 'job' ? 'user.job_title' : 'user.behavior' }),
  ),
  { name: 'campaign', kind: 'numeric', label: 'contacts in this campaign', category: 'user.behavior', log: true },
  { name: 'pdays', kind: 'numeric', label: 'days since last contacted', category: 'user.behavior' },
  { name: 'previous', kind: 'numeric', label: 'earlier contacts', category: 'user.behavior', log: true },
  ...['emp.var.rate', 'cons.price.idx', 'cons.conf.idx', 'euribor3m', 'nr.employed'].map((name): FeatureSpec => ({ name, kind: 'numeric', label: name, category: 'system.operations' })),
];

describe('classifiers on the reference data', () => {
  it('predicts IBM Telco churn with a 5-fold stratified AUC of at least 0.83 without protected attributes', () => {
    const rows = parse(readReference('telco-churn', 'Telco-Customer-Churn.csv'), { columns: true }) as Row[];
    assert.equal(rows.length, 7043);
    const result = crossValidatedAuc(rows, telcoSpecs, (r) => (r.Churn === 'Yes' ? 1 : 0), 1);
    assert.ok(result.auc >= 0.83, `AUC ${result.auc}`);
    if (process.env.SHOW_FIGURES) console.log(`telco AUC ${result.auc.toFixed(4)} Brier ${result.brier.toFixed(4)}`);
    assert.ok(result.brier < 0.16, `Brier ${result.brier}`);
    // Calibrated: in every well-populated bin the predicted rate is close to the observed one.
    for (const bin of reliability(result.predictions, result.y)) if (bin.count >= 200) assert.ok(Math.abs(bin.meanPredicted - bin.observedRate) < 0.08, JSON.stringify(bin));
  });

  it('scores UCI Bank Marketing leads with a 5-fold stratified AUC of at least 0.78 without duration or protected attributes', () => {
    const rows = parse(readReference('bank-marketing', 'bank-additional-full.csv'), { columns: true, delimiter: ';' }) as Row[];
    assert.equal(rows.length, 41188);
    assert.ok(!bankSpecs.some((s) => s.name === 'duration'), 'duration leaks the outcome');
    const result = crossValidatedAuc(rows, bankSpecs, (r) => (r.y === 'yes' ? 1 : 0), 1);
    assert.ok(result.auc >= 0.78, `AUC ${result.auc}`);
    if (process.env.SHOW_FIGURES) console.log(`bank AUC ${result.auc.toFixed(4)} Brier ${result.brier.toFixed(4)}`);
    const base = result.y.reduce((s, v) => s + v, 0) / result.y.length;
    assert.ok(result.brier < base * (1 - base), `Brier ${result.brier} beats the base rate's ${base * (1 - base)}`);
  });

  it('refuses a protected attribute as a feature with a coded error', () => {
    const rows = [{ gender: 'Female', tenure: '3' }];
    assert.throws(
      () => FeatureEncoder.fit([{ name: 'gender', kind: 'categorical', label: 'gender', category: 'user.demographic.gender' }, { name: 'tenure', kind: 'numeric', label: 'tenure', category: 'user.behavior' }], rows, isProtected),
      (error: unknown) => isCandorError(error) && error.code === 'SCORING_PROTECTED_FEATURE' && JSON.stringify(error.details).includes('gender'),
    );
  });

  it('explains a score by the coefficients times the person\'s values', () => {
    const rows: Row[] = [];
    for (let i = 0; i < 400; i++) rows.push({ plan: i % 2 === 0 ? 'monthly' : 'yearly', months: String(i % 40), y: String(i % 2 === 0 && i % 40 < 20 ? 1 : 0) });
    const specs: FeatureSpec[] = [
      { name: 'plan', kind: 'categorical', label: 'plan', category: 'user.behavior' },
      { name: 'months', kind: 'numeric', label: 'months as a customer', category: 'user.behavior' },
    ];
    const encoder = FeatureEncoder.fit(specs, rows, isProtected);
    const x = encoder.encode(rows);
    const data: Dataset = { x, y: Uint8Array.from(rows.map((r) => Number(r.y))), n: rows.length, d: encoder.columns.length };
    const model = fitLogistic(data, { lambda: 0.1 });
    const top = topContributions(encoder, model.weights, x, 0, 2);
    assert.deepEqual(top.map((c) => c.text).sort(), ['months as a customer is far below average', 'plan is monthly'].sort());
    assert.ok(top.every((c) => c.effect > 0), 'both push a monthly newcomer towards the outcome');
    assert.ok(linearScore(model, x, 0, data.d) > linearScore(model, x, 1, data.d));
    const some = subset(data, [0, 1, 2]);
    assert.equal(some.n, 3);
  });
});
