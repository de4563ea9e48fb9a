import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { CsvImporter } from './index.ts';

// ImportCounts.events counts the calls sent through the pipeline: rows the import answers duplicate itself never reach it.
describeEachDialect('CSV import: calls counted', (dialect) => {
  const ctx = useKernel(dialect);
  it('counts no call for rows the import answers duplicate without the pipeline', async () => {
    const csv = 'user_id,event,order_id,total\nec-1,Order Completed,EC-1,10\nec-2,Order Completed,EC-2,20\n';
    const run = () => new CsvImporter(ctx.kernel).run(Readable.from([csv]), { kind: 'events', basis: 'contract', source: 'shop', actor: CLI_ACTOR });
    const first = await run();
    const seen: number[] = [];
    const m = ctx.kernel.collect.observe((_s, _st, _p, n) => void seen.push(n));
    const second = await run();
    m();
    assert.deepEqual([first.stored, first.events], [2, 2]);
    assert.equal(second.duplicate, 2);
    assert.equal(seen.length, 0, 'the pipeline saw none of them');
    assert.equal(second.events, 0);
    const dry = await new CsvImporter(ctx.kernel).run(Readable.from([`${csv}ec-3,Order Completed,EC-3,30\n`]), { kind: 'events', basis: 'contract', source: 'shop', actor: CLI_ACTOR, dryRun: true });
    assert.deepEqual([dry.duplicate, dry.events], [2, 1], 'a dry run counts the calls a real run would send');
  });
});
