import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import type { Kernel } from '../../kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { isCandorError } from '../../shared/errors.ts';
import { coerceCell, CsvImporter, MAX_ORDER_LINES, productKey, type CsvImportOptions, type RowReport } from './index.ts';

describe('CSV import mapping', () => {
  it('reads numbers and booleans only where the plan declares them', () => {
    assert.equal(coerceCell('number', '10.50'), 10.5);
    assert.equal(coerceCell('integer', '3'), 3);
    assert.equal(coerceCell('integer', '-2e3'), -2000);
    assert.equal(coerceCell('number', '1,234.50'), '1,234.50');
    assert.equal(coerceCell('number', '1e999'), '1e999');
    assert.equal(coerceCell('string', '0042'), '0042');
    assert.equal(coerceCell('string|number', '42'), '42');
    assert.equal(coerceCell(undefined, '42'), '42');
    assert.equal(coerceCell('boolean', 'TRUE'), true);
    assert.equal(coerceCell('boolean', 'yes'), 'yes');
  });

  it('maps product_* columns to the line-item names of the e-commerce spec', () => {
    assert.equal(productKey('product_id'), 'product_id');
    assert.equal(productKey('product_name'), 'name');
    assert.equal(productKey('Product_Price'), 'price');
    assert.equal(productKey('product_'), undefined);
    assert.equal(productKey('order_id'), undefined);
  });
});

describeEachDialect('CSV import', (dialect) => {
  const ctx = useKernel(dialect);
  const importer = (kernel: Kernel) => new CsvImporter(kernel);

  async function run(text: string, options: Partial<CsvImportOptions> & Pick<CsvImportOptions, 'kind' | 'basis'>) {
    const reports: RowReport[] = [];
    const warnings: string[] = [];
    const summary = await importer(ctx.kernel).run(Readable.from([text]), { source: 'files', actor: CLI_ACTOR, ...options }, {
      onRows: (rows) => {
        reports.push(...rows);
      },
      onWarning: (message) => warnings.push(message),
    });
    return { summary, reports, warnings };
  }

  const profileOf = async (userId: string) =>
    (await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, [{ identifiers: [{ type: 'user_id', value: userId }], source: 'files', at: new Date().toISOString() }]))[0] ?? null;

  it('refuses, before any row, a consent import naming an older notice version that lacks one of its purposes', async () => {
    const current = ctx.kernel.consent.currentNotice();
    const without = await ctx.kernel.consent.publishNotice({ text: `${current.text}\n\nWithout e-mail.`, purposes: current.purposes.filter((p) => p.purpose !== 'marketing.communications.email') }, CLI_ACTOR);
    await ctx.kernel.consent.publishNotice({ text: `${current.text}\n\nWith e-mail again.`, purposes: current.purposes }, CLI_ACTOR);
    await assert.rejects(
      run('user_id,email\nnv1,nv1@candor-shop.dev\n', { kind: 'customers', basis: 'consent', purposes: ['analytics.reporting', 'marketing.communications.email'], noticeVersion: without.version }),
      (error) => isCandorError(error, 'CONSENT_PURPOSE_NOT_IN_NOTICE'),
    );
    assert.equal(await profileOf('nv1'), null, 'nothing imported, no consent recorded');
  });

  it('stops at a row larger than the limit (a quote never closed), after storing the rows before it', async () => {
    const text = ['user_id,email', 'r1,r1@candor-shop.dev', 'r2,"r2@candor-shop.dev', ...Array.from({ length: 50 }, (_, i) => `r${i + 3},r${i + 3}@candor-shop.dev`)].join('\n');
    const { summary, reports } = await run(text, { kind: 'customers', basis: 'contract', maxRowBytes: 200 });
    assert.equal(summary.complete, false);
    assert.ok(isCandorError(summary.error, 'IMPORT_ROW_TOO_LARGE'));
    assert.equal(summary.stored, 1);
    assert.deepEqual(reports.map((r) => [r.row, r.code]), [[3, 'IMPORT_ROW_TOO_LARGE']]);
    assert.ok(await profileOf('r1'));
    assert.equal(await profileOf('r9'), null);
  });

  it('refuses an order with more lines than it groups, and goes on with the next one', async () => {
    const lines = ['order_id,anonymous_id,total,product_id', ...Array.from({ length: MAX_ORDER_LINES + 2 }, (_, i) => `big-1,anon-big,5,p${i}`), 'small-1,anon-big,5,p1'];
    const { summary, reports } = await run(lines.join('\n'), { kind: 'events', basis: 'contract', batchSize: 100 });
    assert.equal(summary.complete, true);
    assert.equal(summary.rows, MAX_ORDER_LINES + 3);
    assert.equal(summary.invalid, MAX_ORDER_LINES + 2);
    assert.equal(summary.stored, 1);
    assert.equal(reports.length, MAX_ORDER_LINES + 2);
    assert.ok(reports.every((r) => r.code === 'IMPORT_ORDER_TOO_LARGE'));
    assert.deepEqual(reports.map((r) => r.row), Array.from({ length: MAX_ORDER_LINES + 2 }, (_, i) => i + 2));
  });

  it('never overrides a withdrawal on the basis of consent, and leaves erased people out', async () => {
    const { kernel } = ctx;
    const text = ['user_id,event,page_type', 'w1,Product Viewed,', 'gone-1,Product Viewed,'].join('\n');
    // w1 gave and then withdrew consent for analytics.reporting before the import.
    await run(['user_id,email', 'w1,w1@candor-shop.dev'].join('\n'), { kind: 'customers', basis: 'consent', purposes: ['analytics.reporting'] });
    const w1 = (await profileOf('w1')) as string;
    await kernel.consent.record(w1, [{ purpose: 'analytics.reporting', state: 'withdrawn' }], { mechanism: 'privacy_center' }, CLI_ACTOR);
    const entries = (await kernel.consent.history(w1)).length;
    await kernel.identity.suppress([{ type: 'user_id', valueHash: kernel.identity.hash({ type: 'user_id', value: 'gone-1' }) }], 'erasure');

    const { summary, reports } = await run(text, { kind: 'events', basis: 'consent', purposes: ['analytics.reporting', 'personalize.profiling'] });
    assert.equal(summary.consents, 1);
    const history = await kernel.consent.history(w1);
    assert.equal(history.length, entries + 1);
    assert.deepEqual(history.slice(entries).map((e) => [e.purpose, e.state, e.mechanism]), [['personalize.profiling', 'given', 'import']]);
    assert.deepEqual(reports.map((r) => [r.row, r.status, r.code]), [[3, 'suppressed', 'COLLECT_SUBJECT_SUPPRESSED']]);
    assert.equal(await profileOf('gone-1'), null);
  });

  it('on the basis of consent records consent only for people whose rows pass the envelope and the plan; a dry run records none', async () => {
    const { kernel } = ctx;
    const text = [
      'type,event,name,user_id,price,timestamp',
      'track,Product Viewed,,v1,9.5,',
      'track,Product Viewed,,v2,cheap,',
      `page,,${'n'.repeat(301)},v3,,`,
      'track,Product Viewed,,v4,,yesterday',
    ].join('\n');
    const options = { kind: 'events', basis: 'consent', purposes: ['analytics.reporting'], source: 'shop-consent' } as const;
    const dry = await run(text, { ...options, dryRun: true });
    assert.equal(dry.summary.consents, 0);
    assert.equal(await profileOf('v1'), null);

    const { summary, reports } = await run(text, options);
    assert.deepEqual([summary.stored, summary.invalid, summary.consents], [1, 3, 1]);
    assert.deepEqual(reports.map((r) => [r.row, r.code, r.detail]), [
      [3, 'CATALOG_EVENT_INVALID', 'properties.price: type'],
      [4, 'CATALOG_EVENT_INVALID', 'properties.name: maxLength'],
      [5, 'COLLECT_TIMESTAMP_INVALID', 'timestamp'],
    ]);
    const v1 = (await profileOf('v1')) as string;
    assert.deepEqual((await kernel.consent.history(v1)).map((e) => [e.purpose, e.state, e.mechanism]), [['analytics.reporting', 'given', 'import']]);
    for (const userId of ['v2', 'v3', 'v4']) assert.equal(await profileOf(userId), null, userId);
    // The check before consent is not counted in the plan's statistics: each message once, by the pipeline.
    const stats = await kernel.catalog.stats({ source: 'shop-consent' });
    assert.deepEqual(
      stats.map((row) => [row.kind, row.event, row.accepted, row.refused.CATALOG_EVENT_INVALID]).sort(),
      [
        ['page', '', 0, 1],
        ['track', 'Product Viewed', 1, 1],
      ],
    );
  });

  it('imports page and screen rows, and reports types it does not import', async () => {
    const text = ['type,event,name,anonymous_id,path', 'page,,Home,anon-p,/', 'identify,,,anon-p,', 'track,,,anon-p,'].join('\n');
    const { summary, reports } = await run(text, { kind: 'events', basis: 'consent', purposes: ['analytics.reporting'] });
    assert.equal(summary.stored, 1);
    assert.deepEqual(reports.map((r) => [r.row, r.code, r.detail]), [
      [3, 'IMPORT_ROW_TYPE_UNSUPPORTED', 'type'],
      [4, 'COLLECT_MESSAGE_INVALID', 'event'],
    ]);
  });

  it('refuses a header without ids, with a repeated column, or no header at all', async () => {
    for (const [text, reason] of [
      ['email\nx@candor-shop.dev', 'no_identity_column'],
      ['user_id,email,EMAIL\nu,x@candor-shop.dev,y@candor-shop.dev', 'duplicate_column'],
      ['', 'empty_file'],
    ] as const) {
      const { summary } = await run(text, { kind: 'customers', basis: 'contract' });
      assert.equal(summary.complete, false);
      assert.ok(isCandorError(summary.error, 'IMPORT_HEADER_INVALID'), String(summary.error));
      assert.equal(summary.error.details?.reason, reason);
    }
  });
});
