import assert from 'node:assert/strict';
import { it } from 'node:test';
import { describeEachDialect } from '../../test/support/databases.ts';
import { useCli } from '../../test/support/cli.ts';

describeEachDialect('candor demo generate and candor score', (dialect) => {
  const cli = useCli(dialect);

  it('sends a deterministic synthetic shop through the pipeline and scores it, saying who was not profiled and why', async () => {
    const demo = await cli.candor('demo', 'generate', '--customers', '80', '--seed', '5', '--score');
    assert.equal(demo.code, 0, demo.err);
    assert.match(demo.out, /demo shop \(seed 5, 52 weeks ending today\): 80 customers, \d+ orders, \d+ events — \d+ stored/);
    assert.match(demo.out, /consent: \d+ refused profiling, \d+ sent Global Privacy Control/);
    assert.match(demo.out, /scoring run run\w+: 80 people, \d+ profiled/);
    assert.match(demo.out, /not profiled: \d+ refused/);
    assert.match(demo.out, /bgnbd: bgnbd-1 fitted on \d+ customers/);
    assert.match(demo.out, /^persona .+ buyers \(\d+\): /m);
    const again = await cli.candor('score', '--model', 'rfm', 'bgnbd');
    assert.equal(again.code, 0, again.err);
    assert.match(again.out, /rfm: rfm-2 fitted/);
    assert.match(again.out, /bgnbd: bgnbd-2 fitted/);
    assert.doesNotMatch(again.out, /personas:/);
    const wrong = await cli.candor('score', '--model', 'astrology');
    assert.notEqual(wrong.code, 0);
  });
});
