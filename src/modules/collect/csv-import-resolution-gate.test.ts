import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { before, it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { DEFAULT_PLAN, type PlanDocument } from '../catalog/index.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { CsvImporter, type CsvImportOptions } from './index.ts';

const EMAIL = 'marketing.communications.email';
const SMS = 'marketing.communications.sms';

/** The default plan with e-mail and phone kept only for marketing by e-mail and by text message (consent-based purposes). */
function planWithConsentOnlyContact(): PlanDocument {
  const plan = structuredClone(DEFAULT_PLAN);
  const { email, phone } = (plan.traits as { properties: Record<string, { 'x-candor': { purposes: string[] } }> }).properties;
  assert.ok(email && phone);
  email['x-candor'].purposes = [EMAIL];
  phone['x-candor'].purposes = [SMS];
  return plan;
}

// The import records its consent for the people its rows resolve to, and links their identifiers, before the pipeline
// stores the rows. What it resolves is gated as the pipeline gates a resolution (collect.service #regateBeforeLinking):
// a row whose resolution lands on, or merges in, someone who refused links and merges nothing, and makes no profile.
describeEachDialect('CSV import: a row is gated on the resolution the import makes, before it commits', (dialect) => {
  const ctx = useKernel(dialect);
  const at = '2026-12-01T10:00:00.000Z';

  before(async () => {
    await ctx.kernel.catalog.publish(planWithConsentOnlyContact(), CLI_ACTOR);
  });

  async function person(identifiers: { type: string; value: string }[], state: 'given' | 'refused' | null | Record<string, 'given' | 'refused'>): Promise<string> {
    const { storage, identity, consent } = ctx.kernel;
    const [resolution] = await storage.raw.transaction((tx) => identity.resolveBatch(tx, [{ identifiers, source: 'setup', at }]));
    const profileId = resolution?.profileId;
    assert.ok(typeof profileId === 'string');
    const states = state === null ? {} : typeof state === 'string' ? { [EMAIL]: state, [SMS]: state } : state;
    const changes = Object.entries(states).map(([purpose, s]) => ({ purpose, state: s }));
    if (changes.length > 0) await consent.record(profileId, changes, { mechanism: 'api', noticeVersion: 1, jurisdiction: 'NL', source: 'setup' }, CLI_ACTOR);
    return profileId;
  }

  async function run(text: string, options: Partial<CsvImportOptions> = {}) {
    return new CsvImporter(ctx.kernel).run(Readable.from([text]), { kind: 'customers', basis: 'consent', source: 'crm', actor: CLI_ACTOR, purposes: [EMAIL, SMS], ...options });
  }

  async function holderOf(type: string, value: string): Promise<string | null> {
    const found = await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, [{ identifiers: [{ type, value }], source: 'check', at }]);
    return found[0] ?? null;
  }

  it('merges nobody in when a row names a person who refused beside one with no record', async () => {
    const open = await person([{ type: 'email', value: 'open@candor-shop.dev' }], null);
    const refusing = await person([{ type: 'phone', value: '+31612340001' }], 'refused');
    const summary = await run('user_id,email,phone\nrg-u1,open@candor-shop.dev,+31612340001');
    assert.equal(summary.stored, 0, JSON.stringify(summary));
    assert.equal(summary.refused, 1, JSON.stringify(summary));
    // Both people stay apart, and the new user id is linked to nobody.
    assert.equal(await holderOf('email', 'open@candor-shop.dev'), open);
    assert.equal(await holderOf('phone', '+31612340001'), refusing);
    assert.equal(await holderOf('user_id', 'rg-u1'), null);
    // The refusal stands, and nobody got the import's consent for the row.
    await ctx.kernel.consent.load([open, refusing]);
    assert.equal(ctx.kernel.consent.decide(refusing, EMAIL).reason, 'refused');
    assert.equal(ctx.kernel.consent.decide(open, EMAIL).reason, 'no_record');
  });

  it('still links and stores a row whose people allow it', async () => {
    const open = await person([{ type: 'email', value: 'open2@candor-shop.dev' }], null);
    const giving = await person([{ type: 'phone', value: '+31612340002' }], 'given');
    const summary = await run('user_id,email,phone\nrg-u2,open2@candor-shop.dev,+31612340002');
    assert.equal(summary.stored, 1, JSON.stringify(summary));
    const survivor = await holderOf('user_id', 'rg-u2');
    assert.ok(survivor === open || survivor === giving);
    assert.equal(await holderOf('email', 'open2@candor-shop.dev'), survivor);
    assert.equal(await holderOf('phone', '+31612340002'), survivor);
  });

  it('links a new user id beside an address of someone who refused and holds another user id to nobody who refused', async () => {
    const refusing = await person([{ type: 'user_id', value: 'rg-old' }, { type: 'email', value: 'taken@candor-shop.dev' }], 'refused');
    await run('user_id,email\nrg-new,taken@candor-shop.dev');
    assert.equal(await holderOf('email', 'taken@candor-shop.dev'), refusing);
    // The new user id may not join someone who holds one already: it is someone new, or nobody.
    assert.notEqual(await holderOf('user_id', 'rg-new'), refusing);
    assert.equal(await holderOf('user_id', 'rg-old'), refusing);
    await ctx.kernel.consent.load([refusing]);
    assert.equal(ctx.kernel.consent.decide(refusing, EMAIL).reason, 'refused');
  });

  it('judges a row for the person a later row of the batch merges its profile into', async () => {
    // C refused e-mail marketing and gave text messages; B, known by an anonymous id, has no record.
    const c = await person([{ type: 'email', value: 'chain-c@candor-shop.dev' }, { type: 'phone', value: '+31612349001' }], { [EMAIL]: 'refused', [SMS]: 'given' });
    const b = await person([{ type: 'anonymous_id', value: 'chain-anon-b' }], null);
    // Row 1 (a new e-mail beside B's anonymous id) serves e-mail marketing only; row 2 (a new user id, B's anonymous id
    // and C's phone) serves text messages and merges B into C.
    const summary = await run('user_id,anonymous_id,email,phone\n,chain-anon-b,chain-b1@candor-shop.dev,\nchain-u,chain-anon-b,,+31612349001');
    assert.deepEqual([summary.stored, summary.refused], [1, 1], JSON.stringify(summary));
    // Row 1 is refused for the merged person (C refused what it serves): its e-mail is linked to nobody.
    assert.equal(await holderOf('email', 'chain-b1@candor-shop.dev'), null);
    assert.equal((await ctx.kernel.identity.canonicalsIn(ctx.kernel.storage.raw, [b])).get(b), c);
    // The import's consent goes to the person as merged, never to the profile merged away.
    assert.deepEqual((await ctx.kernel.consent.history(b)).filter((e) => e.mechanism === 'import'), []);
    await ctx.kernel.consent.load([c]);
    assert.equal(ctx.kernel.consent.decide(c, EMAIL).reason, 'refused');
  });
});
