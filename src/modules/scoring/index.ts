/**
 * Scoring: lifetime value (BG/NBD + Gamma–Gamma), churn risk, lead scores and fairness reports — each fitted only on
 * the people whose lawful basis covers profiling, matched against published reference figures, and explained in
 * words to staff and to the person scored.
 */
export { compress, fitBgNbd, logLikelihood, probabilityAlive, expectedPurchases, expectedPurchasesNew, type BgNbdParams, type BgNbdFit, type RepeatSummary, type CompressedSummaries } from './bgnbd.ts';
export { fitGammaGamma, expectedSpend, gammaGammaLogLikelihood, type GammaGammaParams, type GammaGammaFit, type SpendSummary } from './gamma-gamma.ts';
export { lifetimeValue, DEFAULT_CLV, type ClvOptions, type ClvResult } from './clv.ts';
export { churnRisk, DEFAULT_CHURN, type ChurnRisk, type ChurnOptions, type RiskBand } from './churn.ts';
export { summarize, dayNumber, type Transaction, type CustomerSummary, type SummaryOptions } from './summary.ts';
export { FeatureEncoder, topContributions, type FeatureSpec, type Column, type Contribution } from './features.ts';
export { fitLogistic, fitCalibrated, predict, linearScore, plattScaling, stratifiedFolds, subset, type Dataset, type LogisticModel, type FitOptions } from './logistic.ts';
export { auc, brier, reliability, type ReliabilityBin } from './metrics.ts';
export { fourFifths, type FairnessReport, type GroupRate, type AuditMember } from './fairness.ts';
export { minimize, type MinimizeResult } from './optimize.ts';
export { Scoring, PROFILING_PURPOSES, MODEL_KINDS, type ScoringData, type ScoringDeps, type ModelKind, type ProfileScores, type SubjectScores, type RunSummary, type RunOptions } from './scoring.service.ts';
export { SCORING_MIGRATIONS } from './scoring.repo.ts';
