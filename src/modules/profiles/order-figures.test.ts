import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { PlanFields, PlannedField, RetiredFields } from '../../shared/subject-data.ts';
import { maskOrderFigures, ORDER_EVENT, type ComputedTraits } from './profiles.service.ts';

const computed: ComputedTraits = { firstSeenAt: null, lastSeenAt: null, eventCount: 3, orderCount: 2, totalOrderValue: 120, averageOrderValue: 60, currency: 'EUR' };
const field = (personal: boolean): PlannedField => ({ category: 'user.behavior.purchase_history', purposes: ['analytics.reporting'], retention: 'P7Y', personal });

/** A plan declaring the Order Completed fields given (path → personal). */
function plan(declared: Record<string, boolean>): PlanFields {
  return {
    plannedField: (section, event, path) => (section === 'track' && event === ORDER_EVENT && path in declared ? field(declared[path] as boolean) : undefined),
    declaresInside: () => false,
  };
}

/** Stored versions that declared the fields given, no longer in force. */
function retired(paths: readonly string[], complete = true): RetiredFields {
  return { complete, field: (section, event, path) => (section === 'track' && event === ORDER_EVENT && paths.includes(path) ? { ...field(false), version: 1 } : undefined) };
}

it('shows the order figures when the plan declares total, revenue and currency not personal', () => {
  const shown = maskOrderFigures(computed, plan({ 'properties.total': false, 'properties.revenue': false, 'properties.currency': false }), undefined);
  assert.deepEqual([shown.totalOrderValue, shown.averageOrderValue, shown.currency, shown.masked], [120, 60, 'EUR', undefined]);
});

it('masks the value figures when total is declared personal, and the currency when currency is', () => {
  const masked = maskOrderFigures(computed, plan({ 'properties.total': true, 'properties.revenue': false, 'properties.currency': true }), undefined);
  assert.deepEqual([masked.totalOrderValue, masked.averageOrderValue, masked.currency, masked.orderCount], [null, null, null, 2]);
  assert.deepEqual(masked.masked, ['totalOrderValue', 'averageOrderValue', 'currency']);
});

it('masks what comes from a field an earlier version declared and the plan in force does not, and not from one no version declared', () => {
  const inForce = plan({ 'properties.total': false, 'properties.currency': false });
  assert.deepEqual(maskOrderFigures(computed, inForce, retired(['properties.revenue'])).masked, ['totalOrderValue', 'averageOrderValue']);
  const never = maskOrderFigures(computed, inForce, retired([]));
  assert.deepEqual([never.totalOrderValue, never.masked], [120, undefined]);
  // While a stored version cannot be read, or without the stored versions at all, a field left out may have been declared.
  assert.deepEqual(maskOrderFigures(computed, inForce, retired([], false)).masked, ['totalOrderValue', 'averageOrderValue']);
  assert.deepEqual(maskOrderFigures(computed, inForce, undefined).masked, ['totalOrderValue', 'averageOrderValue']);
});
