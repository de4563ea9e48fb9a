/**
 * Segments: RFM segments with named cells and readable reasons, and personas found by k-means and described in
 * words — computed only for people whose lawful basis covers profiling.
 */
export { rfmSegments, scoreRfm, explainRfm, segmentOf, spendThresholds, DEFAULT_RFM, RFM_SEGMENTS, type RfmThresholds, type RfmSegment, type RfmInput, type RfmResult } from './rfm.ts';
export { fitPersonas, assignPersona, type Persona, type PersonaInput, type PersonaModel, type PersonaOptions } from './personas.ts';
