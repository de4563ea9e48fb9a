import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { it } from 'node:test';
import { describeEachDialect } from '../../test/support/databases.ts';
import { useCli } from '../../test/support/cli.ts';

describeEachDialect('candor plan', (dialect) => {
  const cli = useCli(dialect);
  const { candor } = cli;

  it('shows the default plan with every field, its category, retention and purposes', async () => {
    const shown = await candor('plan', 'show');
    assert.equal(shown.code, 0, shown.err);
    assert.match(shown.out, /^tracking plan "Online shop" version 1 \(sha256 [0-9a-f]{64}\), published \S+ by system/);
    assert.match(shown.out, /track "Order Completed": analytics\.reporting, personalize\.profiling/);
    assert.match(shown.out, /properties\.products\[\]\.price\s+number\s+user\.behavior\.purchase_history\s+P7Y/);
    assert.match(shown.out, /traits\.email\s+string\s+user\.contact\.email\s+P3Y\s+.*\[personal\]/);
    assert.match(shown.out, /properties\.allergies .*\[personal, special category\]/);
    assert.match(shown.out, /context\.location\.latitude .*\[personal, precise location\]/);
  });

  it('lists no warnings for the default plan under the default notice', async () => {
    const listed = await candor('plan', 'warnings');
    assert.equal(listed.code, 0, listed.err);
    assert.match(listed.out, /^tracking plan version 1, notice version 1: no warnings$/);
  });

  it('prints the default plan this release ships, which a store set up on it holds as version 1', async () => {
    const printed = await candor('plan', 'default');
    assert.equal(printed.code, 0, printed.err);
    assert.deepEqual(JSON.parse(printed.out), JSON.parse((await candor('plan', 'show', '--version', '1', '--json')).out));
    assert.equal((JSON.parse(printed.out) as { events: Record<string, { category?: string }> }).events['Order Completed']?.category, 'user.behavior.purchase_history');
  });

  it('validates a file and lists every problem, exit 1', async () => {
    const json = await candor('plan', 'show', '--json');
    const plan = JSON.parse(json.out) as { events: Record<string, { purposes: string[] }>; name: string };
    const good = join(cli.env.dataDir, 'plan.json');
    writeFileSync(good, JSON.stringify(plan));
    const ok = await candor('plan', 'validate', good);
    assert.equal(ok.code, 0, ok.err);
    assert.match(ok.out, /is valid/);

    plan.events['Order Completed']!.purposes = ['analytics.nope'];
    (plan as unknown as Record<string, unknown>).colour = 'blue';
    const bad = join(cli.env.dataDir, 'bad.json');
    writeFileSync(bad, JSON.stringify(plan));
    const refused = await candor('plan', 'validate', bad);
    assert.equal(refused.code, 1);
    assert.match(refused.err, /^error CATALOG_PLAN_INVALID: the tracking plan has 2 problems:/m);
    assert.match(refused.err, /\/colour: is not allowed here/);
    assert.match(refused.err, /\/events\/Order Completed\/purposes\/0: "analytics\.nope" is not a data use/);

    writeFileSync(join(cli.env.dataDir, 'not.json'), '{ nope');
    const unreadable = await candor('plan', 'validate', join(cli.env.dataDir, 'not.json'));
    assert.equal(unreadable.code, 2);
    assert.match(unreadable.err, /not valid JSON/);
    assert.equal((await candor('plan', 'validate', join(cli.env.dataDir, 'missing.json'))).code, 2);
  });

  it('publishes a file as a new version, says so when unchanged, and shows older versions', async () => {
    const plan = JSON.parse((await candor('plan', 'show', '--json')).out) as { description?: string };
    plan.description = 'Edited from the command line';
    const file = join(cli.env.dataDir, 'edited.json');
    writeFileSync(file, JSON.stringify(plan, null, 2));
    const published = await candor('plan', 'publish', file);
    assert.equal(published.code, 0, published.err);
    assert.match(published.out, /published tracking plan version 2 \(sha256 [0-9a-f]{64}\)/);
    assert.match((await candor('plan', 'publish', file)).out, /unchanged: version 2/);
    assert.match((await candor('plan', 'show')).out, /version 2 .* by cli/);
    const first = JSON.parse((await candor('plan', 'show', '--version', '1', '--json')).out) as { description?: string };
    assert.notEqual(first.description, plan.description);
    const versions = await candor('plan', 'versions');
    assert.match(versions.out, /^\s+1 .* system .*\n\s+2 .* cli .*\(in force\)$/);
    assert.equal((await candor('plan', 'show', '--version', '0')).code, 2);
    const missing = await candor('plan', 'show', '--version', '9');
    assert.equal(missing.code, 1);
    assert.match(missing.err, /CATALOG_PLAN_VERSION_NOT_FOUND/);
  });

  it('refuses to publish an invalid file and keeps the version in force', async () => {
    const bad = join(cli.env.dataDir, 'invalid.json');
    writeFileSync(bad, JSON.stringify({ name: 'x', events: { E: { purposes: ['analytics.reporting'], properties: { type: 'object', properties: { f: { type: 'string' } } } } } }));
    const refused = await candor('plan', 'publish', bad);
    assert.equal(refused.code, 1);
    assert.match(refused.err, /\/events\/E\/properties\/properties\/f: a leaf field must carry an "x-candor" annotation/);
    assert.match((await candor('plan', 'versions')).out, /2 .*\(in force\)$/);
  });

  it('publishes with --base only while that version is the latest, else CATALOG_PLAN_CONFLICT and nothing stored', async () => {
    const plan = JSON.parse((await candor('plan', 'show', '--json')).out) as { description?: string };
    const file = join(cli.env.dataDir, 'based.json');
    plan.description = 'Edited from version 2';
    writeFileSync(file, JSON.stringify(plan));
    const published = await candor('plan', 'publish', file, '--base', '2');
    assert.equal(published.code, 0, published.err);
    assert.match(published.out, /published tracking plan version 3 /);
    plan.description = 'Also edited from version 2';
    writeFileSync(file, JSON.stringify(plan));
    const refused = await candor('plan', 'publish', file, '--base', '2');
    assert.equal(refused.code, 1);
    assert.match(refused.err, /error CATALOG_PLAN_CONFLICT: .* \{"baseVersion":2,"latestVersion":3\}/);
    assert.match((await candor('plan', 'versions')).out, /\n\s+3 .*\(in force\)$/);
    assert.equal((await candor('plan', 'publish', file, '--base', 'two')).code, 2);
    const rebased = await candor('plan', 'publish', file, '--base', '3');
    assert.match(rebased.out, /published tracking plan version 4 /);
    // Back to version 3's document: a new version, published on the one it was edited from.
    plan.description = 'Edited from version 2';
    writeFileSync(file, JSON.stringify(plan));
    assert.match((await candor('plan', 'publish', file, '--base', '4')).out, /published tracking plan version 5 /);
  });
  it('warns of fields the consent gate can never store, and still validates and publishes', async () => {
    const plan = JSON.parse((await candor('plan', 'show', '--json')).out) as { events: Record<string, { properties: { properties: Record<string, unknown> } }> };
    plan.events['Survey Answered']!.properties.properties.mood = { type: 'string', 'x-candor': { category: 'user.health_and_medical', purposes: ['analytics.reporting'], retention: 'P6M', personal: true } };
    const file = join(cli.env.dataDir, 'mood.json');
    writeFileSync(file, JSON.stringify(plan));
    const warning = /^warning: track "Survey Answered" properties\.mood: never stored: a special category needs explicit consent, and none of its purposes \(analytics\.reporting\) asks for it$/m;
    const checked = await candor('plan', 'validate', file);
    assert.equal(checked.code, 0, checked.err);
    assert.match(checked.err, warning);
    const published = await candor('plan', 'publish', file);
    assert.equal(published.code, 0, published.err);
    assert.match(published.out, /published tracking plan version/);
    assert.match(published.err, warning);
  });
});
