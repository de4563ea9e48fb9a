import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { PassThrough } from 'node:stream';
import { join } from 'node:path';
import { it } from 'node:test';
import { Command } from 'commander';
import { describeEachDialect } from '../../test/support/databases.ts';
import { useCli } from '../../test/support/cli.ts';
import { openKernel, type Kernel } from '../kernel.ts';
import { CsvImporter } from '../modules/collect/index.ts';
import { CLI_ACTOR } from '../shared/actor.ts';
import { registerImportCommands } from './import.ts';

const SUMMARY = /^imported (\d+) rows: (\d+) stored, (\d+) duplicate, (\d+) refused \(no lawful basis\), (\d+) invalid, (\d+) suppressed; report: (.+)$/m;

describeEachDialect('candor import', (dialect) => {
  const cli = useCli(dialect);
  const { candor } = cli;

  function csv(name: string, lines: string[]): string {
    const file = join(cli.env.dataDir, name);
    writeFileSync(file, lines.join('\n') + '\n');
    return file;
  }

  /** [rows, stored, duplicate, refused, invalid, suppressed] from the summary line. */
  function summary(out: string): number[] {
    const match = SUMMARY.exec(out);
    assert.ok(match, out);
    return match.slice(1, 7).map(Number);
  }

  async function withKernel<T>(run: (kernel: Kernel) => Promise<T>): Promise<T> {
    const kernel = await openKernel(cli.env.config);
    try {
      return await run(kernel);
    } finally {
      await kernel.close();
    }
  }

  async function profileOf(kernel: Kernel, userId: string): Promise<string> {
    const [id] = await kernel.identity.lookupBatch(kernel.storage.raw, [{ identifiers: [{ type: 'user_id', value: userId }], source: 'test', at: new Date().toISOString() }]);
    assert.ok(id, `no profile for ${userId}`);
    return id;
  }

  const traitsOf = async (kernel: Kernel, profileId: string) =>
    Object.fromEntries((await kernel.profiles.get([profileId], { decrypt: true })).traits.map((t) => [t.key, t.value]));

  it('imports customers on the basis of consent and records their consent with mechanism import, with receipts', async () => {
    const file = csv('consented.csv', ['user_id,email,first_name,country,loyalty_tier', 'a1,ada@candor-shop.dev,Ada,DE,gold', 'a2,bo@candor-shop.dev,Bo,FR,silver']);
    const result = await candor('import', 'customers', file, '--source', 'crm', '--basis', 'consent', '--purposes', 'marketing.communications.email,personalize.profiling', '--jurisdiction', 'DE');
    assert.equal(result.code, 0, result.err);
    assert.deepEqual(summary(result.out), [2, 2, 0, 0, 0, 0]);
    assert.match(result.err, /consent recorded for 2 people \(mechanism import\)/);
    assert.match(result.err, /not in the tracking plan, dropped: traits\.loyalty_tier \(2 rows\)/);
    await withKernel(async (kernel) => {
      const profileId = await profileOf(kernel, 'a1');
      const history = await kernel.consent.history(profileId);
      assert.deepEqual(history.map((e) => [e.purpose, e.state, e.mechanism, e.jurisdiction, e.source]).sort(), [
        ['marketing.communications.email', 'given', 'import', 'DE', 'crm'],
        ['personalize.profiling', 'given', 'import', 'DE', 'crm'],
      ]);
      assert.ok(history.every((e) => e.receiptId !== null && e.basis === 'consent'));
      const traits = await traitsOf(kernel, profileId);
      assert.equal(traits.email, 'ada@candor-shop.dev');
      assert.equal(traits.first_name, 'Ada');
      assert.equal(traits.country, 'DE');
      assert.ok(!('loyalty_tier' in traits));
      const runs = [];
      for await (const entry of kernel.audit.scan()) if (entry.action === 'import.run') runs.push(entry);
      assert.equal(runs.length, 2);
      assert.deepEqual(JSON.parse(runs[0]?.details ?? '{}'), {
        phase: 'started',
        source: 'crm',
        kind: 'customers',
        basis: 'consent',
        purposes: ['marketing.communications.email', 'personalize.profiling'],
        asOf: statSync(file).mtime.toISOString(),
      });
      const details = JSON.parse(runs[1]?.details ?? '{}') as Record<string, unknown>;
      assert.equal(runs[1]?.purpose, 'essential.legal_obligation');
      assert.equal(runs[1]?.outcome, 'success');
      assert.equal(details.phase, 'finished');
      assert.equal(details.source, 'crm');
      assert.equal(details.basis, 'consent');
      assert.equal(details.rows, 2);
      assert.equal(details.stored, 2);
      assert.equal(details.consents, 2);
      assert.ok(!JSON.stringify(runs).includes('ada@candor-shop.dev'));
    });
  });

  it('on the basis of consent records consent only for people whose rows the pipeline stores, not for invalid rows', async () => {
    const file = csv('consent-invalid.csv', ['user_id,email,first_name', 'g1,gil@candor-shop.dev,Gil', 'g2,not-an-email,Gus']);
    const result = await candor('import', 'customers', file, '--source', 'crm', '--basis', 'consent', '--purposes', 'marketing.communications.email');
    assert.equal(result.code, 0, result.err);
    assert.deepEqual(summary(result.out), [2, 1, 0, 0, 1, 0]);
    assert.match(result.err, /consent recorded for 1 people \(mechanism import\)/);
    assert.equal(readFileSync(`${file}.report.csv`, 'utf8'), 'row,status,code,detail\n3,invalid,CATALOG_EVENT_INVALID,traits.email: format\n');
    await withKernel(async (kernel) => {
      const history = await kernel.consent.history(await profileOf(kernel, 'g1'));
      assert.deepEqual(history.map((e) => [e.purpose, e.state, e.mechanism]), [['marketing.communications.email', 'given', 'import']]);
      assert.ok(history.every((e) => e.receiptId !== null));
      const [rejected] = await kernel.identity.lookupBatch(kernel.storage.raw, [{ identifiers: [{ type: 'user_id', value: 'g2' }], source: 'crm', at: new Date().toISOString() }]);
      assert.equal(rejected, null);
      let last;
      for await (const entry of kernel.audit.scan()) if (entry.action === 'import.run') last = entry;
      assert.deepEqual(JSON.parse(last?.details ?? '{}') as unknown, { ...(JSON.parse(last?.details ?? '{}') as object), stored: 1, invalid: 1, consents: 1 });
    });
  });

  it('puts the import on record (import.run, phase started) before its first row is stored, so an import killed midway is accounted for', { timeout: 30_000 }, async () => {
    await withKernel(async (kernel) => {
      const importer = new CsvImporter({ storage: kernel.storage, audit: kernel.audit, keyring: kernel.keyring, catalog: kernel.catalog, consent: kernel.consent, identity: kernel.identity, collect: kernel.collect, taxonomy: kernel.taxonomy });
      // The file arrives in parts: what the log holds is read once the first row is stored, before the rest is sent.
      const input = new PassThrough();
      input.write('user_id,email\nk1,k1@candor-shop.dev\nk2,k2@candor-shop.dev\n');
      let onRecord: unknown[] | undefined;
      let stored = -1;
      const read = async () => {
        const entries = [];
        for await (const entry of kernel.audit.scan()) if (entry.action === 'import.run' && entry.resource === 'import:killed') entries.push(JSON.parse(entry.details ?? '{}') as unknown);
        onRecord = entries;
        input.end('k3,k3@candor-shop.dev\n');
      };
      const summary = await importer.run(input, { kind: 'customers', source: 'killed', basis: 'contract', batchSize: 1, asOf: '2024-04-01T00:00:00Z', actor: CLI_ACTOR }, {
        onProgress: (counts) => {
          if (stored === -1) {
            stored = counts.stored;
            void read();
          }
        },
      });
      assert.equal(stored, 1);
      assert.deepEqual(onRecord, [{ phase: 'started', source: 'killed', kind: 'customers', basis: 'contract', purposes: ['essential.service.operations'], asOf: '2024-04-01T00:00:00.000Z' }]);
      assert.equal(summary.stored, 3);
    });
  });

  it('on the basis of contract keeps only what contract-basis purposes allow', async () => {
    const customers = csv('contract-customers.csv', ['user_id,email,first_name,country', 'b1,bea@candor-shop.dev,Bea,NL']);
    const first = await candor('import', 'customers', customers, '--source', 'crm', '--basis', 'contract');
    assert.equal(first.code, 0, first.err);
    assert.deepEqual(summary(first.out), [1, 1, 0, 0, 0, 0]);
    assert.match(first.err, /purposes with basis contract in this deployment: essential\.service\.operations/);
    assert.match(first.err, /left out, no lawful basis for their purposes: traits\.country \(1 rows\)/);

    const events = csv('contract-orders.csv', [
      'event,order_id,user_id,timestamp,total,revenue,currency,product_id,product_name,product_price',
      'Order Completed,5001,b1,2024-03-01T10:00:00Z,20,20,EUR,p1,Mug,20',
      'Product Viewed,,b1,2024-03-01T09:00:00Z,,,EUR,p1,,',
    ]);
    const second = await candor('import', 'events', events, '--source', 'shop', '--basis', 'contract');
    assert.equal(second.code, 0, second.err);
    assert.deepEqual(summary(second.out), [2, 1, 0, 1, 0, 0]);
    assert.match(second.err, /warning: none of the purposes the tracking plan gives Product Viewed events \(analytics\.reporting, personalize\.profiling\) is allowed by basis contract/);
    assert.equal(readFileSync(`${events}.report.csv`, 'utf8'), 'row,status,code,detail\n3,refused,COLLECT_NO_LAWFUL_BASIS,no purpose of this row has a lawful basis for this person (import basis contract)\n');

    await withKernel(async (kernel) => {
      const profileId = await profileOf(kernel, 'b1');
      const traits = await traitsOf(kernel, profileId);
      assert.equal(traits.email, 'bea@candor-shop.dev');
      assert.equal(traits.first_name, 'Bea');
      assert.ok(!('country' in traits));
      assert.deepEqual(await kernel.consent.history(profileId), []);
      const stored = (await kernel.collect.events([profileId], { decrypt: true, limit: 10 })).filter((e) => e.kind === 'track');
      assert.equal(stored.length, 1);
      assert.equal(stored[0]?.event, 'Order Completed');
      assert.deepEqual(stored[0]?.purposes, ['essential.service.operations']);
      assert.deepEqual(stored[0]?.data.properties, { order_id: '5001', total: 20, revenue: 20, currency: 'EUR' });
    });
  });

  it('groups the lines of an order into one Order Completed event with products, numbers read where the plan declares them', async () => {
    const file = csv('orders.csv', [
      'order_id,user_id,timestamp,total,currency,product_id,product_name,product_price,product_quantity,product_category',
      '1001,c1,2024-03-01T10:00:00Z,30.5,EUR,p1,Mug,10.5,1,kitchen',
      '1001,c1,2024-03-01T10:00:00Z,30.5,EUR,p2,Cup,10,2,kitchen',
      '1002,c1,2024-03-05T10:00:00Z,5,EUR,p3,Pen,5,1,office',
    ]);
    const result = await candor('import', 'events', file, '--source', 'orders', '--basis', 'consent', '--purposes', 'analytics.reporting', '--batch-size', '2');
    assert.equal(result.code, 0, result.err);
    assert.deepEqual(summary(result.out), [3, 3, 0, 0, 0, 0]);
    await withKernel(async (kernel) => {
      const profileId = await profileOf(kernel, 'c1');
      const orders = (await kernel.collect.events([profileId], { decrypt: true, limit: 10 })).filter((e) => e.event === 'Order Completed');
      assert.equal(orders.length, 2);
      const first = orders.find((o) => (o.data.properties as { order_id: string }).order_id === '1001');
      assert.ok(first);
      assert.equal(first.occurredAt, '2024-03-01T10:00:00.000Z');
      assert.deepEqual(first.data.properties, {
        order_id: '1001',
        total: 30.5,
        currency: 'EUR',
        products: [
          { product_id: 'p1', name: 'Mug', price: 10.5, quantity: 1, category: 'kitchen' },
          { product_id: 'p2', name: 'Cup', price: 10, quantity: 2, category: 'kitchen' },
        ],
      });
      assert.ok(first.purposes.includes('analytics.reporting'));
    });
  });

  it('stores nothing twice when the same file is imported again', async () => {
    const file = join(cli.env.dataDir, 'orders.csv');
    const counts = () => withKernel(async (kernel) => ({ events: await kernel.collect.countEvents(), ledger: (await kernel.consent.history(await profileOf(kernel, 'c1'))).length }));
    const before = await counts();
    const again = await candor('import', 'events', file, '--source', 'orders', '--basis', 'consent', '--purposes', 'analytics.reporting');
    assert.equal(again.code, 0, again.err);
    assert.deepEqual(summary(again.out), [3, 0, 3, 0, 0, 0]);
    assert.doesNotMatch(again.err, /consent recorded/);
    assert.deepEqual(await counts(), before);
    const report = readFileSync(`${file}.report.csv`, 'utf8').trim().split('\n');
    assert.deepEqual(report.slice(1).map((line) => line.split(',').slice(0, 2).join(',')), ['2,duplicate', '3,duplicate', '4,duplicate']);

    // With a message_id column, that id is what recognises a row.
    const withIds = csv('with-ids.csv', ['message_id,event,anonymous_id,order_id,total', 'm-1,Order Completed,anon-9,9001,12', 'm-2,Order Completed,anon-9,9002,13']);
    assert.deepEqual(summary((await candor('import', 'events', withIds, '--source', 'orders', '--basis', 'contract')).out), [2, 2, 0, 0, 0, 0]);
    const changed = csv('with-ids-again.csv', ['message_id,event,anonymous_id,order_id,total', 'm-1,Order Completed,anon-9,9001,14']);
    assert.deepEqual(summary((await candor('import', 'events', changed, '--source', 'orders', '--basis', 'contract')).out), [1, 0, 1, 0, 0, 0]);
  });

  it('reports malformed and invalid rows by their number in the file, with codes and never their values, in an owner-only file', async () => {
    const file = csv('messy.csv', [
      'user_id,email,first_name',
      'd1,dan@candor-shop.dev,Dan',
      'd2,not-an-email,Dora',
      'd3,dee@candor-shop.dev',
      'd4,dina@candor-shop.dev,"Di',
      'na"',
      'd5',
      ',eve@candor-shop.dev,Eve',
      'd6,fay@candor-shop.dev,Fay',
    ]);
    const report = join(cli.env.dataDir, 'messy-report.csv');
    const result = await candor('import', 'customers', file, '--source', 'crm', '--basis', 'contract', '--report', report);
    assert.equal(result.code, 0, result.err);
    assert.deepEqual(summary(result.out), [7, 3, 0, 0, 4, 0]);
    assert.match(result.out, /report: .*messy-report\.csv$/);
    assert.equal(statSync(report).mode & 0o777, 0o600);
    const text = readFileSync(report, 'utf8');
    assert.equal(
      text,
      [
        'row,status,code,detail',
        '3,invalid,CATALOG_EVENT_INVALID,traits.email: format',
        '4,invalid,IMPORT_ROW_MALFORMED,wrong number of columns',
        '7,invalid,IMPORT_ROW_MALFORMED,wrong number of columns',
        '8,invalid,COLLECT_IDENTITY_MISSING,userId/anonymousId',
        '',
      ].join('\n'),
    );
    for (const value of ['not-an-email', 'Dora', 'dee@candor-shop.dev', 'd3', 'd5', 'eve@candor-shop.dev', 'Eve']) assert.ok(!text.includes(value), value);
    await withKernel(async (kernel) => {
      assert.equal((await traitsOf(kernel, await profileOf(kernel, 'd4'))).first_name, 'Di\nna');
      assert.equal((await traitsOf(kernel, await profileOf(kernel, 'd6'))).first_name, 'Fay');
    });
  });

  it('checks every row in a dry run and writes nothing but the report', async () => {
    const file = csv('dry.csv', ['event,user_id,product_id,price', 'Product Viewed,e1,p1,9.5', 'Order Completed,e1,,', 'Rocket Launched,e1,,']);
    const before = await withKernel((kernel) => kernel.collect.countEvents());
    const result = await candor('import', 'events', file, '--source', 'web', '--basis', 'contract', '--dry-run');
    assert.equal(result.code, 0, result.err);
    assert.match(result.out, /^checked 3 rows \(dry run, nothing written\): 0 would be stored, 0 duplicate, 1 refused \(no lawful basis\), 2 invalid, 0 suppressed; report: /);
    assert.equal(
      readFileSync(`${file}.report.csv`, 'utf8'),
      'row,status,code,detail\n2,refused,COLLECT_NO_LAWFUL_BASIS,no purpose of this row has a lawful basis for this person (import basis contract)\n3,invalid,CATALOG_EVENT_INVALID,properties.order_id: required\n4,invalid,CATALOG_EVENT_UNDECLARED,\n',
    );
    await withKernel(async (kernel) => {
      assert.equal(await kernel.collect.countEvents(), before);
      const [id] = await kernel.identity.lookupBatch(kernel.storage.raw, [{ identifiers: [{ type: 'user_id', value: 'e1' }], source: 'web', at: new Date().toISOString() }]);
      assert.equal(id, null);
    });
  });

  it('writes nothing to the database in a dry run: every table has as many rows after it as before', async () => {
    const rowCounts = () =>
      withKernel(async (kernel) => {
        const raw = kernel.storage.raw;
        const tables =
          dialect === 'postgres'
            ? await raw.all<{ name: string }>(`SELECT table_name AS name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name`)
            : await raw.all<{ name: string }>(`SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name`);
        const counts: Record<string, number> = {};
        for (const { name } of tables) counts[name] = Number((await raw.all<{ n: number | string }>(`SELECT COUNT(*) AS n FROM "${name}"`))[0]?.n);
        return counts;
      });
    const customers = csv('dry-customers.csv', ['user_id,email,first_name,city', 'dc1,dc1@candor-shop.dev,Dee,Delft', 'dc2,not-an-email,Dan,Leiden']);
    const events = csv('dry-events.csv', ['event,user_id,order_id,total,product_id', 'Order Completed,dc1,7001,5,p1', 'Order Completed,dc1,7001,5,p2', 'Product Viewed,dc3,,,p1']);
    // A first open of the kernel may complete its own set-up; the dry runs are measured from the second.
    await rowCounts();
    const before = await rowCounts();
    assert.ok(before.catalog_stats !== undefined && before.identity_profiles !== undefined, JSON.stringify(before));
    const first = await candor('import', 'customers', customers, '--source', 'dry-crm', '--basis', 'consent', '--purposes', 'analytics.reporting', '--dry-run');
    assert.equal(first.code, 0, first.err);
    assert.match(first.out, /^checked 2 rows \(dry run, nothing written\): 1 would be stored/);
    const second = await candor('import', 'events', events, '--source', 'dry-shop', '--basis', 'contract', '--dry-run');
    assert.equal(second.code, 0, second.err);
    assert.match(second.out, /^checked 3 rows \(dry run, nothing written\): 2 would be stored, 0 duplicate, 1 refused/);
    assert.deepEqual(await rowCounts(), before);
  });

  it('exits 1 at the first row that is not UTF-8, naming its line, after storing the rows before it', async () => {
    const file = join(cli.env.dataDir, 'latin1.csv');
    writeFileSync(file, Buffer.from('user_id,email,first_name\nu1,u1@candor-shop.dev,Ann\nu2,u2@candor-shop.dev,J\xe9r\xf4me\nu3,u3@candor-shop.dev,Bo\n', 'latin1'));
    const result = await candor('import', 'customers', file, '--source', 'crm-latin1', '--basis', 'contract');
    assert.equal(result.code, 1);
    assert.match(result.err, /error IMPORT_FILE_NOT_UTF8: .*"row":3,"line":3,"offset":74/);
    assert.deepEqual(summary(result.out), [2, 1, 0, 0, 1, 0]);
    assert.equal(
      readFileSync(`${file}.report.csv`, 'utf8'),
      'row,status,code,detail\n3,invalid,IMPORT_FILE_NOT_UTF8,not UTF-8 at line 3 (byte 74 of the file); the file was not read past this row\n',
    );
    await withKernel(async (kernel) => {
      await profileOf(kernel, 'u1');
      const [u2, u3] = await kernel.identity.lookupBatch(kernel.storage.raw, ['u2', 'u3'].map((value) => ({ identifiers: [{ type: 'user_id', value }], source: 'test', at: new Date().toISOString() })));
      assert.deepEqual([u2, u3], [null, null]);
    });
  });

  it('exits 1 at a quote that is never closed, naming its lines to the end of the file, after storing the rows before it', async () => {
    const file = csv('unclosed.csv', ['user_id,email,first_name', 'uc1,uc1@candor-shop.dev,Ann', 'uc2,uc2@candor-shop.dev,"Bo', 'uc3,uc3@candor-shop.dev,Cy', 'uc4,uc4@candor-shop.dev,Di']);
    const result = await candor('import', 'customers', file, '--source', 'crm-unclosed', '--basis', 'contract');
    assert.equal(result.code, 1);
    assert.match(result.err, /error IMPORT_QUOTE_NOT_CLOSED: .*\{"row":3,"lastLine":5\}/);
    assert.deepEqual(summary(result.out), [2, 1, 0, 0, 1, 0]);
    assert.equal(readFileSync(`${file}.report.csv`, 'utf8'), 'row,status,code,detail\n3,invalid,IMPORT_QUOTE_NOT_CLOSED,"a quote is never closed (lines 3-5, the end of the file): none of these lines was imported"\n');
    await withKernel(async (kernel) => {
      await profileOf(kernel, 'uc1');
      const [uc3] = await kernel.identity.lookupBatch(kernel.storage.raw, [{ identifiers: [{ type: 'user_id', value: 'uc3' }], source: 'test', at: new Date().toISOString() }]);
      assert.equal(uc3, null);
    });
  });

  it("dates a customer list by the file's modification time, or --as-of: a later list sets a value back, the same file again stores nothing", async () => {
    const lines = (city: string) => ['user_id,email,city', `mt1,mt1@candor-shop.dev,${city}`];
    const file = csv('sync.csv', lines('Berlin'));
    const at = (iso: string) => utimesSync(file, new Date(iso), new Date(iso));
    const sync = (...extra: string[]) => candor('import', 'customers', file, '--source', 'crm-sync', '--basis', 'consent', '--purposes', 'analytics.reporting', ...extra);
    const city = () => withKernel(async (kernel) => (await kernel.profiles.get([await profileOf(kernel, 'mt1')], { decrypt: true })).traits.find((t) => t.key === 'city'));

    at('2024-01-31T12:00:00Z');
    const january = await sync();
    assert.equal(january.code, 0, january.err);
    assert.match(january.err, /rows without a timestamp are as of 2024-01-31T12:00:00\.000Z \(the file's modification time; --as-of to set another\)/);
    assert.deepEqual(summary(january.out), [1, 1, 0, 0, 0, 0]);
    writeFileSync(file, lines('Munich').join('\n') + '\n');
    at('2024-02-29T12:00:00Z');
    assert.deepEqual(summary((await sync()).out), [1, 1, 0, 0, 0, 0]);
    // March's export says Berlin again.
    writeFileSync(file, lines('Berlin').join('\n') + '\n');
    at('2024-03-31T12:00:00Z');
    assert.deepEqual(summary((await sync()).out), [1, 1, 0, 0, 0, 0]);
    assert.deepEqual([(await city())?.value, (await city())?.updatedAt], ['Berlin', '2024-03-31T12:00:00.000Z']);
    // The same file again: stored before.
    assert.deepEqual(summary((await sync()).out), [1, 0, 1, 0, 0, 0]);
    // An older list given its date: stored, but it changes no newer value.
    writeFileSync(file, lines('Hamburg').join('\n') + '\n');
    const older = await sync('--as-of', '2024-03-01');
    assert.equal(older.code, 0, older.err);
    assert.match(older.err, /rows without a timestamp are as of 2024-03-01T00:00:00\.000Z$/m);
    assert.deepEqual(summary(older.out), [1, 1, 0, 0, 0, 0]);
    assert.equal((await city())?.value, 'Berlin');

    const bad = await sync('--as-of', 'March');
    assert.equal(bad.code, 1);
    assert.match(bad.err, /error IMPORT_OPTION_INVALID: .*"option":"as-of"/);
    at(new Date(Date.now() + 3_600_000).toISOString());
    const ahead = await sync();
    assert.equal(ahead.code, 1);
    assert.match(ahead.err, /error IMPORT_OPTION_INVALID: .*"option":"as-of".*modification time/);
    const events = await candor('import', 'events', file, '--source', 'crm-sync', '--basis', 'contract', '--as-of', '2024-03-01');
    assert.equal(events.code, 1);
    assert.match(events.err, /unknown option '--as-of'/);
  });

  it('draws a progress bar on a terminal that follows the rows imported, not the bytes the parser read ahead, and ends at 100%', async () => {
    const header = 'user_id,email,first_name\n';
    const line = (i: number) => `p${String(i).padStart(5, '0')},p${String(i).padStart(5, '0')}@candor-shop.dev,Pia\n`;
    const rows = 600;
    const file = join(cli.env.dataDir, 'progress.csv');
    writeFileSync(file, header + Array.from({ length: rows }, (_, i) => line(i)).join(''));
    const size = statSync(file).size;
    const rowBytes = Buffer.byteLength(line(0));
    // A slow terminal: each redraw takes longer than the bar's 200 ms throttle, so every update is drawn.
    const drawn: string[] = [];
    const terminal = {
      isTTY: true,
      columns: 200,
      write(chunk: string) {
        drawn.push(chunk);
        if (chunk.includes('%')) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 201);
        return true;
      },
    };
    const out: string[] = [];
    const program = new Command('candor').exitOverride();
    // The bar uses only isTTY, columns and write of the stream.
    registerImportCommands(program, { out: (l) => out.push(l), err: () => undefined, withKernel, progress: terminal as unknown as NodeJS.WriteStream });
    await program.parseAsync(['node', 'candor', 'import', 'customers', file, '--source', 'crm', '--basis', 'contract', '--batch-size', '100']);
    assert.deepEqual(summary(out.join('\n')), [rows, rows, 0, 0, 0, 0]);

    const draws = drawn.join('').split('\r').flatMap((text) => {
      const match = /\]\s+(\d+)%\s+(\d+) rows/.exec(text);
      return match ? [{ percent: Number(match[1]), rows: Number(match[2]) }] : [];
    });
    assert.ok(draws.length >= rows / 100, JSON.stringify(draws));
    for (const draw of draws) {
      const imported = Math.floor((100 * (Buffer.byteLength(header) + draw.rows * rowBytes)) / size);
      assert.ok(draw.percent <= imported, `${draw.percent}% drawn after ${draw.rows} of ${rows} rows (${imported}% of the file)`);
    }
    assert.deepEqual(draws.at(-1), { percent: 100, rows });
    assert.deepEqual(
      draws.map((d) => d.percent),
      [...draws.map((d) => d.percent)].sort((a, b) => a - b),
    );
  });

  it('always draws the last progress update, however soon after the one before, and ends the line', async () => {
    const file = csv('progress-fast.csv', ['user_id,email', ...Array.from({ length: 8 }, (_, i) => `f${i},f${i}@candor-shop.dev`)]);
    // A fast terminal: the updates of one-row batches come well within the bar's 200 ms throttle.
    const drawn: string[] = [];
    const terminal = { isTTY: true, columns: 200, write: (chunk: string) => drawn.push(chunk) > 0 };
    const out: string[] = [];
    const program = new Command('candor').exitOverride();
    registerImportCommands(program, { out: (l) => out.push(l), err: () => undefined, withKernel, progress: terminal as unknown as NodeJS.WriteStream });
    await program.parseAsync(['node', 'candor', 'import', 'customers', file, '--source', 'crm', '--basis', 'contract', '--batch-size', '1']);
    assert.deepEqual(summary(out.join('\n')), [8, 8, 0, 0, 0, 0]);
    const text = drawn.join('');
    assert.ok(text.endsWith('\n'), JSON.stringify(text));
    assert.match(text.split('\r').at(-1) ?? '', /\]\s+100%\s+8 rows\s.*stored 8\s.*\x1b\[K\n$/);
  });

  it('exits 1 with a coded error for a file it cannot read or options it cannot accept', async () => {
    const missing = join(cli.env.dataDir, 'no-such-file.csv');
    const gone = await candor('import', 'customers', missing, '--source', 'crm', '--basis', 'contract');
    assert.equal(gone.code, 1);
    assert.match(gone.err, /error IMPORT_FILE_UNREADABLE: .*"reason":"ENOENT"/);
    assert.equal(existsSync(`${missing}.report.csv`), false);
    const file = csv('options.csv', ['user_id,email', 'x1,x1@candor-shop.dev']);
    const unknown = await candor('import', 'customers', file, '--source', 'crm', '--basis', 'because');
    assert.equal(unknown.code, 1);
    assert.match(unknown.err, /error IMPORT_BASIS_UNKNOWN/);
    const noPurposes = await candor('import', 'customers', file, '--source', 'crm', '--basis', 'consent');
    assert.equal(noPurposes.code, 1);
    assert.match(noPurposes.err, /error IMPORT_PURPOSES_REQUIRED/);
    const contractPurpose = await candor('import', 'customers', file, '--source', 'crm', '--basis', 'consent', '--purposes', 'essential.service.operations');
    assert.equal(contractPurpose.code, 1);
    assert.match(contractPurpose.err, /error CONSENT_BASIS_NOT_CONSENT/);
    const batch = await candor('import', 'customers', file, '--source', 'crm', '--basis', 'contract', '--batch-size', 'lots');
    assert.equal(batch.code, 1);
    assert.match(batch.err, /error IMPORT_OPTION_INVALID: .*"option":"batch-size"/);
    const noHeader = csv('no-ids.csv', ['email,first_name', 'y@candor-shop.dev,Y']);
    const header = await candor('import', 'customers', noHeader, '--source', 'crm', '--basis', 'contract');
    assert.equal(header.code, 1);
    assert.match(header.err, /error IMPORT_HEADER_INVALID: .*"reason":"no_identity_column"/);
    assert.match(header.out, /^imported 0 rows/);
  });
});
