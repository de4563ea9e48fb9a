import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { openKernel, type Kernel } from '../../kernel.ts';
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

  it('records a consent for the person the row is stored for, not for another holder of one of its identifiers', async () => {
    const { kernel } = ctx;
    await run('user_id,email\nshare-a,family@candor-shop.dev\n', { kind: 'customers', basis: 'contract' });
    // A new user id next to an address the first account holds: one user id per profile, so the row is someone new.
    const { summary } = await run('user_id,email\nshare-b,family@candor-shop.dev\n', { kind: 'customers', basis: 'consent', purposes: ['marketing.communications.email'] });
    assert.equal(summary.stored, 1);
    const a = (await profileOf('share-a')) as string;
    const b = (await profileOf('share-b')) as string;
    assert.ok(a && b && a !== b);
    await kernel.consent.load([a, b]);
    assert.equal(kernel.consent.decide(a, 'marketing.communications.email').reason, 'no_record', 'nobody consented for the first account');
    assert.equal(kernel.consent.decide(b, 'marketing.communications.email').allowed, true);
  });

  it('merges nobody for a consent import row the merged person would refuse', async () => {
    const { kernel } = ctx;
    const at = new Date().toISOString();
    const [a] = await kernel.storage.raw.transaction((tx) => kernel.identity.resolveBatch(tx, [{ identifiers: [{ type: 'user_id', value: 'refusing-acct' }], source: 'files', at }]));
    const [b] = await kernel.storage.raw.transaction((tx) => kernel.identity.resolveBatch(tx, [{ identifiers: [{ type: 'anonymous_id', value: 'refusing-dev' }], source: 'files', at }]));
    const account = a?.profileId as string;
    const device = b?.profileId as string;
    assert.ok(account && device && account !== device);
    // The account refused the import's purposes: the row is refused, and links nobody.
    await kernel.consent.record(account, [{ purpose: 'analytics.reporting', state: 'refused' }, { purpose: 'personalize.profiling', state: 'refused' }], { mechanism: 'banner_save' }, CLI_ACTOR);
    const { summary } = await run('user_id,anonymous_id,event\nrefusing-acct,refusing-dev,Product Viewed\n', { kind: 'events', basis: 'consent', purposes: ['analytics.reporting', 'personalize.profiling'] });
    assert.equal(summary.refused, 1);
    assert.equal(await kernel.identity.canonical(device), device, 'a refused row merges nobody');
  });

  it('links no new user id to a device whose person opted out of the imported purposes', async () => {
    const { kernel } = ctx;
    const [b] = await kernel.storage.raw.transaction((tx) => kernel.identity.resolveBatch(tx, [{ identifiers: [{ type: 'anonymous_id', value: 'opted-out-dev' }], source: 'files', at: new Date().toISOString() }]));
    const device = b?.profileId as string;
    await kernel.consent.record(device, [{ purpose: 'analytics.reporting', state: 'refused' }, { purpose: 'personalize.profiling', state: 'refused' }], { mechanism: 'banner_save' }, CLI_ACTOR);
    const { summary } = await run('user_id,anonymous_id,event\nopted-out-new,opted-out-dev,Product Viewed\n', { kind: 'events', basis: 'consent', purposes: ['analytics.reporting', 'personalize.profiling'] });
    assert.equal(summary.refused, 1);
    assert.equal(await profileOf('opted-out-new'), null, 'the new user id is linked to nobody');
    // Nor beside a device whose person's processing is restricted (their consent stands, but allows nothing now).
    const [c] = await kernel.storage.raw.transaction((tx) => kernel.identity.resolveBatch(tx, [{ identifiers: [{ type: 'anonymous_id', value: 'restricted-dev' }], source: 'files', at: new Date().toISOString() }]));
    const restricted = c?.profileId as string;
    await kernel.consent.record(restricted, [{ purpose: 'analytics.reporting', state: 'given' }, { purpose: 'personalize.profiling', state: 'given' }], { mechanism: 'banner_save' }, CLI_ACTOR);
    await kernel.consent.restrict([restricted], {}, CLI_ACTOR);
    const again = await run('user_id,anonymous_id,event\nrestricted-new,restricted-dev,Product Viewed\n', { kind: 'events', basis: 'consent', purposes: ['analytics.reporting', 'personalize.profiling'] });
    assert.equal(again.summary.refused, 1);
    assert.equal(await profileOf('restricted-new'), null, 'the new user id is linked to nobody');
  });

  it('makes and links nobody for a row whose purposes the gate will refuse, whatever else the import claims', async () => {
    const { kernel } = ctx;
    const device = async (value: string) => (await kernel.storage.raw.transaction((tx) => kernel.identity.resolveBatch(tx, [{ identifiers: [{ type: 'anonymous_id', value }], source: 'files', at: new Date().toISOString() }])))[0]?.profileId as string;
    const refused = { mechanism: 'banner_save' } as const;
    const claim = { kind: 'events', basis: 'consent', purposes: ['analytics.reporting', 'personalize.profiling', 'marketing.communications.email'] } as const;
    // A claimed purpose the page view does not serve (e-mail), with no record: the row is still refused.
    const a = await device('gate-dev-a');
    await kernel.consent.record(a, [{ purpose: 'analytics.reporting', state: 'refused' }, { purpose: 'personalize.profiling', state: 'refused' }], refused, CLI_ACTOR);
    assert.equal((await run('user_id,anonymous_id,event\ngate-new-a,gate-dev-a,Product Viewed\n', claim)).summary.refused, 1);
    assert.equal(await profileOf('gate-new-a'), null);
    // E-mail given, what a page view serves refused: refused.
    const b = await device('gate-dev-b');
    await kernel.consent.record(b, [{ purpose: 'analytics.reporting', state: 'refused' }, { purpose: 'personalize.profiling', state: 'refused' }, { purpose: 'marketing.communications.email', state: 'given' }], refused, CLI_ACTOR);
    assert.equal((await run('user_id,anonymous_id,event\ngate-new-b,gate-dev-b,Product Viewed\n', claim)).summary.refused, 1);
    assert.equal(await profileOf('gate-new-b'), null);
    // Nobody known, only e-mail claimed: a page view serves nothing the import can make lawful.
    assert.equal((await run('user_id,event\ngate-new-c,Product Viewed\n', { kind: 'events', basis: 'consent', purposes: ['marketing.communications.email'] })).summary.refused, 1);
    assert.equal(await profileOf('gate-new-c'), null);
  });

  it('makes nobody for a row that lands on someone new whom the claimed purposes do not serve, beside a consenting person', async () => {
    const { kernel } = ctx;
    const [held] = await kernel.storage.raw.transaction((tx) => kernel.identity.resolveBatch(tx, [{ identifiers: [{ type: 'user_id', value: 'gate-old-e' }, { type: 'anonymous_id', value: 'gate-dev-e' }], source: 'files', at: new Date().toISOString() }]));
    await kernel.consent.record(held?.profileId as string, [{ purpose: 'analytics.reporting', state: 'given' }, { purpose: 'personalize.profiling', state: 'given' }], { mechanism: 'banner_save' }, CLI_ACTOR);
    // The new user id is someone new (one user id each), who has only the import's e-mail claim: a page view is refused.
    const { summary } = await run('user_id,anonymous_id,event\ngate-new-e,gate-dev-e,Product Viewed\n', { kind: 'events', basis: 'consent', purposes: ['marketing.communications.email'] });
    assert.equal(summary.refused, 1);
    assert.equal(await profileOf('gate-new-e'), null, 'a refused row makes nobody');
  });

  it('records the claimed consent for someone new beside a refusing person when the row is stored anyway (an order)', async () => {
    const { kernel } = ctx;
    const [held] = await kernel.storage.raw.transaction((tx) => kernel.identity.resolveBatch(tx, [{ identifiers: [{ type: 'user_id', value: 'gate-old-d' }, { type: 'anonymous_id', value: 'gate-dev-d' }], source: 'files', at: new Date().toISOString() }]));
    await kernel.consent.record(held?.profileId as string, [{ purpose: 'analytics.reporting', state: 'refused' }, { purpose: 'personalize.profiling', state: 'refused' }], { mechanism: 'banner_save' }, CLI_ACTOR);
    // The new user id cannot join the device's person (one user id each): someone new, whose row an order's contract fields store.
    const { summary } = await run('user_id,anonymous_id,event,order_id,revenue\ngate-new-d,gate-dev-d,Order Completed,D-1,10\n', { kind: 'events', basis: 'consent', purposes: ['analytics.reporting', 'personalize.profiling'] });
    assert.equal(summary.stored, 1);
    const person = (await profileOf('gate-new-d')) as string;
    assert.ok(person);
    await kernel.consent.load([person]);
    assert.equal(kernel.consent.decide(person, 'analytics.reporting').allowed, true, 'the claimed consent is theirs');
  });

  it('stores the rows read after another process published a tracking plan under that plan', async () => {
    const { kernel } = ctx;
    const original = (await kernel.catalog.plan()).plan;
    const withoutCity = structuredClone(original) as unknown as { traits: { properties: Record<string, unknown> } };
    delete withoutCity.traits.properties.city;
    const other = await openKernel(ctx.env.config);
    let published = 0;
    try {
      const options = { kind: 'customers', basis: 'consent', purposes: ['analytics.reporting'], source: 'files', actor: CLI_ACTOR, batchSize: 1 } as const;
      await importer(kernel).run(Readable.from(['user_id,city\nplan-a,Delft\n']), options);
      // The first row names nobody: its report, after the first batch, is when the other process publishes.
      const text = ['user_id,city', ',Nowhere', 'plan-b,Leiden', 'plan-c,Gouda', 'plan-d,Breda'].join('\n');
      await importer(kernel).run(Readable.from([text]), options, {
        onRows: async () => {
          if (published === 0) published = (await other.catalog.publish(withoutCity, CLI_ACTOR)).version;
          // PostgreSQL's commit notice arrives a moment after the commit.
          await new Promise((resolve) => setTimeout(resolve, 150));
        },
      });
      assert.ok(published > 0);
      assert.equal(kernel.catalog.version(), published, 'the import put the new version in force');
      assert.equal((await traitsOf((await profileOf('plan-a')) as string)).city, 'Delft', 'stored under the plan before');
      assert.equal((await traitsOf((await profileOf('plan-d')) as string)).city, undefined, 'the new plan keeps no city');
    } finally {
      await kernel.catalog.publish(original, CLI_ACTOR);
      await other.close();
    }
  });

  it('reads rows ending in LF under a header ending in CRLF, one record each', async () => {
    const { summary } = await run('user_id,email\r\nmixed-1,mixed-1@candor-shop.dev\nmixed-2,mixed-2@candor-shop.dev\rmixed-3,mixed-3@candor-shop.dev\r\n', { kind: 'customers', basis: 'contract' });
    assert.equal(summary.stored, 3);
    for (const id of ['mixed-1', 'mixed-2', 'mixed-3']) assert.ok(await profileOf(id), id);
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

  it('a dry run predicts erased people, rows without a usable identifier and duplicate message ids as the real run answers them', async () => {
    const { kernel } = ctx;
    const options = { kind: 'customers', basis: 'consent', purposes: ['analytics.reporting'], source: 'dry-like-real', asOf: '2026-03-01T00:00:00Z' } as const;
    await run('user_id,message_id,email\ndk-1,m-0,dk-1@candor-shop.dev\n', options);
    await kernel.identity.suppress([{ type: 'user_id', valueHash: kernel.identity.hash({ type: 'user_id', value: 'dg-1' }) }], 'erasure');
    const text = [
      'user_id,anonymous_id,message_id,email,city',
      'unknown,,m-1,,Berlin', // only a blocked user id
      'guest,,m-2,dk-1@candor-shop.dev,Paris', // a blocked user id next to a known address
      'dg-1,,m-3,,Rome', // erased
      'df-1,,m-4,,Oslo',
      'df-2,,m-4,,Lima', // the message id of an earlier row
      'dk-1,,m-0,,Porto', // a message id stored already
      ',null,m-5,,Kyiv', // only a blocked anonymous id
    ].join('\n');
    const answers = (r: { reports: RowReport[] }) => r.reports.map((x) => [x.row, x.status, x.code]);
    const expected = [
      [2, 'refused', 'COLLECT_NO_LAWFUL_BASIS'],
      [4, 'suppressed', 'COLLECT_SUBJECT_SUPPRESSED'],
      [6, 'duplicate', ''],
      [7, 'duplicate', ''],
      [8, 'refused', 'COLLECT_NO_LAWFUL_BASIS'],
    ];
    for (const batchSize of [500, 1]) {
      const dry = await run(text, { ...options, dryRun: true, batchSize });
      assert.deepEqual(answers(dry), expected, `dry run, batches of ${batchSize}`);
      assert.equal(dry.summary.stored, 2);
    }
    const real = await run(text, options);
    assert.deepEqual(answers(real), expected);
    assert.deepEqual([real.summary.stored, real.summary.consents], [2, 1]);
    assert.equal(await profileOf('df-2'), null, 'a duplicate row makes nobody');
    assert.equal(await profileOf('unknown'), null);

    // The same file again: every message id is stored now.
    const again = [[2, 'refused', 'COLLECT_NO_LAWFUL_BASIS'], [3, 'duplicate', ''], [4, 'suppressed', 'COLLECT_SUBJECT_SUPPRESSED'], [5, 'duplicate', ''], [6, 'duplicate', ''], [7, 'duplicate', ''], [8, 'refused', 'COLLECT_NO_LAWFUL_BASIS']];
    assert.deepEqual(answers(await run(text, { ...options, dryRun: true })), again);
    assert.deepEqual(answers(await run(text, options)), again);

    // Where the gate lets a row through for nobody (a purpose needing no consent record), it has no one to be stored for.
    const contract = 'user_id,email\nunknown,test@example.com\n';
    const dry = await run(contract, { kind: 'customers', basis: 'contract', source: 'dry-like-real', dryRun: true });
    const stored = await run(contract, { kind: 'customers', basis: 'contract', source: 'dry-like-real' });
    assert.deepEqual(answers(dry), [[2, 'invalid', 'COLLECT_IDENTITY_MISSING']]);
    assert.deepEqual(answers(stored), answers(dry));
  });

  it('on the basis of consent records no consent and makes no profile for a row answered duplicate', async () => {
    const { kernel } = ctx;
    const options = { kind: 'customers', basis: 'consent', purposes: ['analytics.reporting'], source: 'dup-consent', asOf: '2026-03-01T00:00:00Z' } as const;
    const { summary, reports } = await run('user_id,message_id,city\nd1,m-1,Berlin\nd2,m-1,Oslo\n', options);
    assert.deepEqual([summary.stored, summary.duplicate, summary.consents], [1, 1, 1]);
    assert.deepEqual(reports.map((r) => [r.row, r.status, r.detail]), [[3, 'duplicate', 'an earlier row of the file has the same message id']]);
    assert.equal(await profileOf('d2'), null);
    // Stored before: d3's row is a duplicate too.
    const next = await run('user_id,message_id,city\nd3,m-1,Rome\n', options);
    assert.deepEqual([next.summary.duplicate, next.summary.consents], [1, 0]);
    assert.equal(await profileOf('d3'), null);
    assert.equal((await kernel.consent.history((await profileOf('d1')) as string)).length, 1);
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

  it('refuses a row giving a __proto__ field, as HTTP refuses a message holding that key, and imports the rest', async () => {
    const customers = ['user_id,__proto__,favourite_colour', 'proto-c1,ada@candor-shop.dev,red', 'proto-c2,,blue'].join('\n');
    const first = await run(customers, { kind: 'customers', basis: 'consent', purposes: ['analytics.reporting'] });
    assert.deepEqual(first.reports.map((r) => [r.row, r.status, r.code, r.detail]), [[2, 'invalid', 'REQUEST_FORBIDDEN_KEY', 'traits.__proto__']]);
    assert.equal(first.summary.stored, 1);
    assert.equal(first.summary.invalid, 1);
    assert.deepEqual(first.summary.dropped, [{ path: 'traits.favourite_colour', rows: 1 }], 'an empty __proto__ cell gives no field');
    assert.equal(await profileOf('proto-c1'), null);
    assert.ok(await profileOf('proto-c2'));

    const events = [
      'type,order_id,name,anonymous_id,path,total,product_id,product___proto__,__proto__',
      'page,,Home,anon-proto,/,,,,x',
      'page,,Home,anon-proto,/a,,,,',
      'track,proto-o1,,anon-proto,,5,p1,,',
      'track,proto-o1,,anon-proto,,5,p2,y,',
      'track,proto-o2,,anon-proto,,5,p1,,',
    ].join('\n');
    const second = await run(events, { kind: 'events', basis: 'consent', purposes: ['analytics.reporting'] });
    assert.deepEqual(second.reports.map((r) => [r.row, r.code, r.detail]), [
      [2, 'REQUEST_FORBIDDEN_KEY', 'properties.__proto__'],
      [4, 'REQUEST_FORBIDDEN_KEY', 'properties.products[].__proto__'],
      [5, 'REQUEST_FORBIDDEN_KEY', 'properties.products[].__proto__'],
    ]);
    assert.equal(second.summary.stored, 2, 'the page without the cell and the order without it');
    assert.equal(second.summary.invalid, 3);
  });

  async function runBytes(chunks: Buffer[], options: Partial<CsvImportOptions> & Pick<CsvImportOptions, 'kind' | 'basis'>) {
    const reports: RowReport[] = [];
    const summary = await importer(ctx.kernel).run(Readable.from(chunks), { source: 'files', actor: CLI_ACTOR, ...options }, {
      onRows: (rows) => {
        reports.push(...rows);
      },
    });
    return { summary, reports };
  }

  const traitsOf = async (profileId: string) => Object.fromEntries((await ctx.kernel.profiles.get([profileId], { decrypt: true })).traits.map((t) => [t.key, t.value]));
  const profileBy = async (type: string, value: string) =>
    (await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, [{ identifiers: [{ type, value }], source: 'files', at: new Date().toISOString() }]))[0] ?? null;

  it('on the basis of consent creates nothing and records no consent for a row suppressed by its e-mail, as over HTTP', async () => {
    const { kernel } = ctx;
    // An erased person's e-mail is on the suppression list; the row brings a user id nobody has.
    await kernel.identity.suppress([{ type: 'email', valueHash: kernel.identity.hash({ type: 'email', value: 'erased-1@candor-shop.dev' }) }], 'erasure');
    const text = ['user_id,email,city', 'sup-1,Erased-1@candor-shop.dev,Delft', 'sup-2,sup-2@candor-shop.dev,Leiden'].join('\n');
    const { summary, reports } = await run(text, { kind: 'customers', basis: 'consent', purposes: ['analytics.reporting'] });
    assert.deepEqual([summary.stored, summary.suppressed, summary.consents], [1, 1, 1]);
    assert.deepEqual(reports.map((r) => [r.row, r.status, r.code]), [[2, 'suppressed', 'COLLECT_SUBJECT_SUPPRESSED']]);
    assert.equal(await profileOf('sup-1'), null, 'no profile for the suppressed row');
    const other = (await profileOf('sup-2')) as string;
    assert.deepEqual((await kernel.consent.history(other)).map((e) => [e.purpose, e.state, e.mechanism]), [['analytics.reporting', 'given', 'import']]);
  });

  it('on the basis of consent records consent for a row whose user id is a blocked value, on the person its e-mail finds or makes', async () => {
    const { kernel } = ctx;
    // Known by e-mail from an earlier import on another basis.
    await run(['anonymous_id,email', 'anon-blocked-1,known-1@candor-shop.dev'].join('\n'), { kind: 'customers', basis: 'contract' });
    const known = (await profileBy('email', 'known-1@candor-shop.dev')) as string;
    assert.ok(known);
    const text = ['user_id,email,city', 'unknown,known-1@candor-shop.dev,Delft', 'guest,new-1@candor-shop.dev,Leiden'].join('\n');
    const { summary, reports } = await run(text, { kind: 'customers', basis: 'consent', purposes: ['analytics.reporting'] });
    assert.deepEqual(reports, []);
    assert.deepEqual([summary.stored, summary.consents, summary.refusedFields], [2, 2, []]);
    assert.deepEqual((await kernel.consent.history(known)).map((e) => [e.purpose, e.state, e.mechanism]), [['analytics.reporting', 'given', 'import']]);
    assert.equal((await traitsOf(known)).city, 'Delft');
    const made = (await profileBy('email', 'new-1@candor-shop.dev')) as string;
    assert.ok(made);
    assert.deepEqual((await kernel.consent.history(made)).map((e) => [e.purpose, e.state, e.mechanism]), [['analytics.reporting', 'given', 'import']]);
    assert.equal((await traitsOf(made)).city, 'Leiden');
    // The blocked values linked nobody.
    assert.deepEqual(await kernel.identity.lookupBatch(kernel.storage.raw, ['unknown', 'guest'].map((value) => ({ identifiers: [{ type: 'user_id', value }], source: 'files', at: new Date().toISOString() }))), [null, null]);
  });

  it('numbers rows by the line their record starts on: CRLF, quoted line breaks, blank lines, a byte order mark, lone CRs', async () => {
    const rows = (lines: string[], eol: string) => lines.join(eol) + eol;
    const cases: [string, string, [number, string, string][]][] = [
      [
        'CRLF with a quoted CRLF',
        rows(['user_id,email,first_name', 'n1,n1@candor-shop.dev,"Ann', 'Marie"', 'n2,not-an-email,Bo', 'n3,n3@candor-shop.dev', 'n4,n4@candor-shop.dev,"x', 'y",z', 'n5,also-not-an-email,Cy'], '\r\n'),
        [
          [4, 'CATALOG_EVENT_INVALID', 'traits.email: format'],
          [5, 'IMPORT_ROW_MALFORMED', 'wrong number of columns'],
          [6, 'IMPORT_ROW_MALFORMED', 'wrong number of columns (lines 6-7)'],
          [8, 'CATALOG_EVENT_INVALID', 'traits.email: format'],
        ],
      ],
      [
        'LF with blank lines before rows',
        rows(['user_id,email,first_name', 'm1,m1@candor-shop.dev,Al', '', 'm2,m2@candor-shop.dev', '', '', 'm3,not-an-email,Bo', '', 'm4,"m4@candor-shop.dev', '",x,y'], '\n'),
        [
          [4, 'IMPORT_ROW_MALFORMED', 'wrong number of columns'],
          [7, 'CATALOG_EVENT_INVALID', 'traits.email: format'],
          [9, 'IMPORT_ROW_MALFORMED', 'wrong number of columns (lines 9-10)'],
        ],
      ],
      [
        'a byte order mark and CRLF blank lines',
        `\ufeff${rows(['user_id,email', 'k1,k1@candor-shop.dev', '', 'k2,not-an-email', 'k3'], '\r\n')}`,
        [
          [4, 'CATALOG_EVENT_INVALID', 'traits.email: format'],
          [5, 'IMPORT_ROW_MALFORMED', 'wrong number of columns'],
        ],
      ],
      ['lone CRs', rows(['user_id,email', 'c1,"c1@candor-shop.dev', '"', 'c2,not-an-email'], '\r'), [[4, 'CATALOG_EVENT_INVALID', 'traits.email: format']]],
    ];
    for (const [n, [what, text, expected]] of cases.entries()) {
      // Also cut into small chunks: line breaks and the byte order mark split across reads.
      for (const size of [text.length, 3]) {
        const bytes = Buffer.from(text);
        const chunks = Array.from({ length: Math.ceil(bytes.length / size) }, (_, i) => bytes.subarray(i * size, (i + 1) * size));
        const { summary, reports } = await runBytes(chunks, { kind: 'customers', basis: 'contract', source: `numbering-${n}-${size}` });
        assert.equal(summary.complete, true, what);
        assert.deepEqual(reports.map((r) => [r.row, r.code, r.detail]), expected, `${what} (chunks of ${size})`);
      }
    }
  });

  it('stops at the row holding bytes that are not UTF-8, naming its line and byte, after storing the rows before it', async () => {
    const header = Buffer.from('user_id,email,first_name\n');
    const good = Buffer.from('l1,l1@candor-shop.dev,"Zo\u00eb\n\u00c5sa"\n');
    // Latin-1: J\xe9r\xf4me, on the second line of a quoted field.
    const bad = Buffer.concat([Buffer.from('l2,l2@candor-shop.dev,"Jo\n'), Buffer.from([0x4a, 0xe9, 0x72, 0xf4, 0x6d, 0x65]), Buffer.from('"\n')]);
    const after = Buffer.from('l3,l3@candor-shop.dev,Lu\n');
    const file = Buffer.concat([header, good, bad, after]);
    // Cut inside the multi-byte characters of the good row: they are UTF-8 all the same.
    const cut = header.length + good.indexOf(0xc3) + 1;
    const { summary, reports } = await runBytes([file.subarray(0, cut), file.subarray(cut)], { kind: 'customers', basis: 'contract', source: 'latin' });
    assert.equal(summary.complete, false);
    assert.ok(isCandorError(summary.error, 'IMPORT_FILE_NOT_UTF8'), String(summary.error));
    const offset = header.length + good.length + bad.indexOf(0xe9);
    assert.deepEqual(summary.error.details, { row: 4, line: 5, offset });
    assert.equal(summary.stored, 1);
    assert.deepEqual(reports.map((r) => [r.row, r.code, r.detail]), [[4, 'IMPORT_FILE_NOT_UTF8', `not UTF-8 at line 5 (byte ${offset} of the file); the file was not read past this row`]]);
    assert.equal((await traitsOf((await profileOf('l1')) as string)).first_name, 'Zo\u00eb\n\u00c5sa');
    assert.equal(await profileOf('l2'), null);
    assert.equal(await profileOf('l3'), null);

    // In the header: refused before any row. Cut short at the end of the file: that row.
    const inHeader = await runBytes([Buffer.from('user_id,e\xffmail\nh1,h1@candor-shop.dev\n', 'latin1')], { kind: 'customers', basis: 'contract' });
    assert.ok(isCandorError(inHeader.summary.error, 'IMPORT_FILE_NOT_UTF8'), String(inHeader.summary.error));
    assert.deepEqual(inHeader.summary.error.details, { row: 1, line: 1, offset: 9 });
    assert.equal(inHeader.summary.rows, 0);
    assert.equal(await profileOf('h1'), null);
    const truncated = await runBytes([Buffer.from('user_id,email\nt1,t1@candor-shop.dev\nt2,t2@candor-shop.dev'), Buffer.from([0xe2, 0x82])], { kind: 'customers', basis: 'contract' });
    assert.ok(isCandorError(truncated.summary.error, 'IMPORT_FILE_NOT_UTF8'), String(truncated.summary.error));
    assert.deepEqual(truncated.reports.map((r) => [r.row, r.code]), [[3, 'IMPORT_FILE_NOT_UTF8']]);
    assert.ok(await profileOf('t1'));
    assert.equal(await profileOf('t2'), null);
  });

  it('stops at a quote never closed, naming its lines to the end of the file, after storing the rows before it', async () => {
    const lines = ['user_id,email,first_name', 'uq1,uq1@candor-shop.dev,Ann', 'uq2,uq2@candor-shop.dev,"Bo', ...Array.from({ length: 28 }, (_, i) => `uq${i + 3},uq${i + 3}@candor-shop.dev,N${i + 3}`)];
    for (const [n, text] of [lines.join('\n') + '\n', lines.join('\r\n'), lines.join('\r')].entries()) {
      for (const size of [text.length, 3]) {
        const bytes = Buffer.from(text);
        const chunks = Array.from({ length: Math.ceil(bytes.length / size) }, (_, i) => bytes.subarray(i * size, (i + 1) * size));
        const { summary, reports } = await runBytes(chunks, { kind: 'customers', basis: 'contract', source: `unclosed-${n}-${size}` });
        assert.equal(summary.complete, false);
        assert.ok(isCandorError(summary.error, 'IMPORT_QUOTE_NOT_CLOSED'), String(summary.error));
        assert.deepEqual(summary.error.details, { row: 3, lastLine: 31 });
        assert.deepEqual([summary.rows, summary.stored, summary.invalid], [2, 1, 1]);
        assert.deepEqual(reports.map((r) => [r.row, r.code, r.detail]), [[3, 'IMPORT_QUOTE_NOT_CLOSED', 'a quote is never closed (lines 3-31, the end of the file): none of these lines was imported']]);
      }
    }
    assert.ok(await profileOf('uq1'));
    assert.equal(await profileOf('uq3'), null);

    // On the last line only.
    const last = await run('user_id,email\nuq40,uq40@candor-shop.dev\nuq41,"uq41@candor-shop.dev', { kind: 'customers', basis: 'contract' });
    assert.ok(isCandorError(last.summary.error, 'IMPORT_QUOTE_NOT_CLOSED'), String(last.summary.error));
    assert.deepEqual(last.reports.map((r) => [r.row, r.detail]), [[3, 'a quote is never closed (line 3, the end of the file): none of these lines was imported']]);

    // In the header: refused before any row, not read as a row.
    const header = await run('user_id,"email\nuq50,uq50@candor-shop.dev\nuq51,uq51@candor-shop.dev\n', { kind: 'customers', basis: 'contract' });
    assert.ok(isCandorError(header.summary.error, 'IMPORT_HEADER_INVALID'), String(header.summary.error));
    assert.deepEqual(header.summary.error.details, { reason: 'unclosed_quote' });
    assert.equal(header.summary.rows, 0);
    assert.deepEqual(header.reports, []);
    assert.equal(await profileOf('uq50'), null);
  });

  it('dates customer rows without a timestamp by the as-of time: a later list sets a value back, an earlier one changes nothing, the same list again stores nothing', async () => {
    const { kernel } = ctx;
    const options = { kind: 'customers', basis: 'consent', purposes: ['analytics.reporting'], source: 'crm-sync' } as const;
    const sync = (city: string, asOf: string, extra = '') => run(`user_id,email,city${extra ? ',timestamp' : ''}\nasof-1,asof-1@candor-shop.dev,${city}${extra ? `,${extra}` : ''}\n`, { ...options, asOf });
    const city = async () => (await kernel.profiles.get([(await profileOf('asof-1')) as string], { decrypt: true })).traits.find((t) => t.key === 'city');
    const counts = (summary: { stored: number; duplicate: number }) => [summary.stored, summary.duplicate];

    assert.deepEqual(counts((await sync('Berlin', '2024-01-01T00:00:00Z')).summary), [1, 0]);
    assert.deepEqual(counts((await sync('Munich', '2024-02-01')).summary), [1, 0]);
    assert.equal((await city())?.value, 'Munich');
    // March's list says Berlin again: the same cells as January's, of another date.
    const march = await sync('Berlin', '2024-03-01T01:00:00+01:00');
    assert.deepEqual(counts(march.summary), [1, 0]);
    assert.equal(march.summary.asOf, '2024-03-01T00:00:00.000Z');
    assert.deepEqual([(await city())?.value, (await city())?.updatedAt], ['Berlin', '2024-03-01T00:00:00.000Z']);
    // The same list again, or January's again: stored before.
    const again = await sync('Berlin', '2024-03-01T00:00:00Z');
    assert.deepEqual(counts(again.summary), [0, 1]);
    assert.deepEqual(again.reports.map((r) => [r.row, r.status, r.detail]), [[2, 'duplicate', 'stored earlier (same source, time and message id)']]);
    assert.deepEqual(counts((await sync('Berlin', '2024-01-01T00:00:00Z')).summary), [0, 1]);
    // A list older than the stored value is stored as an event, but changes no trait.
    assert.deepEqual(counts((await sync('Hamburg', '2023-12-01T00:00:00Z')).summary), [1, 0]);
    assert.deepEqual([(await city())?.value, (await city())?.updatedAt], ['Berlin', '2024-03-01T00:00:00.000Z']);
    // A row's own timestamp is its time, whatever the as-of time.
    assert.deepEqual(counts((await sync('Cologne', '2024-02-01T00:00:00Z', '2024-03-15T00:00:00Z')).summary), [1, 0]);
    assert.deepEqual([(await city())?.value, (await city())?.updatedAt], ['Cologne', '2024-03-15T00:00:00.000Z']);

    const importer = new CsvImporter(kernel);
    for (const [kind, asOf] of [
      ['customers', 'last Tuesday'],
      ['customers', '2024-02-30'],
      ['customers', new Date(Date.now() + 3_600_000).toISOString()],
      ['events', '2024-01-01T00:00:00Z'],
    ] as const) {
      assert.throws(() => importer.check({ kind, source: 'crm-sync', basis: 'contract', asOf, actor: CLI_ACTOR }), (error) => isCandorError(error, 'IMPORT_OPTION_INVALID') && error.details?.option === 'as-of', asOf);
    }
  });

  it('stores a customer row again under a wider claim, for the fields it lets through, but an event only once whatever the basis', async () => {
    const { kernel } = ctx;
    const customers = 'user_id,email,first_name,country\nclaim-1,claim-1@candor-shop.dev,Cee,DE\n';
    const asOf = '2024-05-01T00:00:00Z';
    const contract = await run(customers, { kind: 'customers', basis: 'contract', asOf });
    assert.deepEqual([contract.summary.stored, contract.summary.refusedFields], [1, [{ path: 'traits.country', rows: 1 }]]);
    const consent = await run(customers, { kind: 'customers', basis: 'consent', purposes: ['analytics.reporting', 'personalize.profiling'], asOf });
    assert.deepEqual([consent.summary.stored, consent.summary.duplicate, consent.summary.consents], [1, 0, 1]);
    assert.equal((await traitsOf((await profileOf('claim-1')) as string)).country, 'DE');
    // The same claim, its purposes in another order: stored before.
    const same = await run(customers, { kind: 'customers', basis: 'consent', purposes: ['personalize.profiling', 'analytics.reporting'], asOf });
    assert.deepEqual([same.summary.stored, same.summary.duplicate], [0, 1]);

    const events = 'event,user_id,order_id,total\nOrder Completed,claim-1,8001,12\n';
    assert.equal((await run(events, { kind: 'events', basis: 'contract' })).summary.stored, 1);
    const wider = await run(events, { kind: 'events', basis: 'consent', purposes: ['analytics.reporting'] });
    assert.deepEqual([wider.summary.stored, wider.summary.duplicate], [0, 1]);
    assert.deepEqual(wider.reports.map((r) => [r.row, r.status, r.detail]), [[2, 'duplicate', 'stored earlier (same source and message id; an event is stored once, whatever the basis)']]);
    const orders = (await kernel.collect.events([(await profileOf('claim-1')) as string], { decrypt: false, limit: 50 })).filter((e) => e.event === 'Order Completed');
    assert.equal(orders.length, 1);
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
