import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { intercepted } from '../../../test/support/intercept.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { isCandorError } from '../../shared/errors.ts';

const banner = { mechanism: 'banner_accept', noticeVersion: 1 } as const;
const CHOICES = [
  { purpose: 'analytics.reporting', state: 'given' },
  { purpose: 'personalize.profiling', state: 'given' },
] as const;
const LEDGER_INSERT = /insert into "consent_ledger"/i;
const isConsentWrite = (statements: readonly string[]) => statements.some((text) => LEDGER_INSERT.test(text));

// Consent changes made while another is being written share the next transaction (one commit for every visitor's
// banner choice of the moment, instead of one each), and each is still recorded as if it had been written alone: its
// own entries, receipt and audit entry, its own answer, and its own failure.
describeEachDialect('consent changes made at the same moment', (dialect) => {
  const ctx = useKernel(dialect);

  it('share transactions, and each is recorded with its own receipt and audit entry', async () => {
    const { consent, audit } = ctx.kernel;
    const people = Array.from({ length: 12 }, () => `grouped-${randomUUID()}`);
    const transactions: string[][] = [];
    const results = await intercepted(ctx.kernel, { transactions }, () => Promise.all(people.map((person) => consent.record(person, CHOICES, banner, CLI_ACTOR))));
    const writes = transactions.filter(isConsentWrite);
    // Written alone, each change would have had its own transaction.
    assert.ok(writes.length < people.length, `${writes.length} transactions for ${people.length} changes`);
    assert.equal(new Set(results.map((r) => r.receiptId)).size, people.length);
    await consent.load(people);
    for (const [i, person] of people.entries()) {
      const result = results[i];
      assert.ok(result);
      assert.deepEqual(result.entries.map((e) => [e.subject, e.purpose, e.state]), CHOICES.map((c) => [consent.pseudonym(person), c.purpose, c.state]));
      const payload = await consent.verifyReceipt(result.receipt);
      assert.equal(payload.jti, result.receiptId);
      assert.equal(payload.sub, consent.pseudonym(person));
      assert.deepEqual((await consent.history(person)).map((e) => e.receiptId), [result.receiptId, result.receiptId]);
      assert.equal(consent.decide(person, 'analytics.reporting').allowed, true);
      const audited = await audit.list({ action: 'consent.record', subject: consent.pseudonym(person), limit: 10 });
      assert.deepEqual(audited.map((e) => e.resource), [`consent_receipt:${result.receiptId}`]);
    }
    assert.equal((await audit.verify()).ok, true);
  });

  it('a change that fails fails alone: the others of its group are recorded', async () => {
    const { consent } = ctx.kernel;
    const people = Array.from({ length: 9 }, () => `grouped-${randomUUID()}`);
    const failing = people[4] as string;
    const refused = new Error('the test refuses this person’s ledger entries');
    const transactions: string[][] = [];
    const statement = (text: string, params: readonly unknown[]) => {
      if (LEDGER_INSERT.test(text) && params.includes(consent.pseudonym(failing))) throw refused;
    };
    const settled = await intercepted(ctx.kernel, { transactions, statement }, () => Promise.allSettled(people.map((person) => consent.record(person, CHOICES, banner, CLI_ACTOR))));
    assert.deepEqual(settled.map((s) => s.status), people.map((p) => (p === failing ? 'rejected' : 'fulfilled')));
    assert.equal((settled[4] as PromiseRejectedResult).reason, refused);
    // Rolled back to its own savepoint: the others of its group went on in the same transaction, not one by one.
    assert.ok(transactions.filter(isConsentWrite).length < people.length, `${transactions.filter(isConsentWrite).length} transactions`);
    await consent.load(people);
    for (const person of people) {
      const history = await consent.history(person);
      assert.equal(history.length, person === failing ? 0 : 2, person);
      assert.equal(consent.decide(person, 'analytics.reporting').allowed, person !== failing, person);
    }
  });

  it('a withdrawal in force ahead of its commit stays in force while another change of its group fails', async () => {
    const { consent } = ctx.kernel;
    const withdrawing = `grouped-${randomUUID()}`;
    const failing = `grouped-${randomUUID()}`;
    await consent.record(withdrawing, CHOICES, banner, CLI_ACTOR);
    await consent.load([withdrawing]);
    const seen: string[] = [];
    let answered = false;
    const statement = async (text: string, params: readonly unknown[]) => {
      // Once the withdrawal is in force (ahead of its commit), every decision until it is answered must say so, also
      // after a load of what the database holds meanwhile.
      if (!answered && (seen.length > 0 || consent.decide(withdrawing, 'analytics.reporting').reason === 'withdrawn')) {
        // (A load on SQLite would wait for this very transaction: there the state must simply stay in memory.)
        if (dialect === 'postgres') await consent.load([withdrawing]);
        seen.push(consent.isLoaded(withdrawing) ? consent.decide(withdrawing, 'analytics.reporting').reason : 'not loaded');
      }
      if (LEDGER_INSERT.test(text) && params.includes(consent.pseudonym(failing))) throw new Error('refused by the test');
    };
    const settled = await intercepted(ctx.kernel, { statement }, () =>
      Promise.allSettled([
        consent.record(`grouped-${randomUUID()}`, CHOICES, banner, CLI_ACTOR),
        consent.record(withdrawing, [{ purpose: 'analytics.reporting', state: 'withdrawn' }], banner, CLI_ACTOR).finally(() => (answered = true)),
        consent.record(failing, CHOICES, banner, CLI_ACTOR),
      ]),
    );
    assert.ok(seen.length > 0, 'statements ran after the withdrawal was put in force');
    assert.deepEqual(settled.map((r) => r.status), ['fulfilled', 'fulfilled', 'rejected']);
    assert.ok(seen.every((reason) => reason === 'withdrawn'), seen.join(', '));
    assert.equal(consent.decide(withdrawing, 'analytics.reporting').reason, 'withdrawn');
  });

  it('a change refused by its own check costs the others of its group nothing', async () => {
    const { consent } = ctx.kernel;
    const people = Array.from({ length: 8 }, () => `grouped-${randomUUID()}`);
    const transactions: string[][] = [];
    const settled = await intercepted(ctx.kernel, { transactions }, () =>
      Promise.allSettled([
        ...people.map((person) => consent.record(person, CHOICES, banner, CLI_ACTOR)),
        // Nothing to lift: refused from inside the change (CONSENT_RESTRICTION_NOT_FOUND).
        consent.liftRestriction([`grouped-${randomUUID()}`], {}, CLI_ACTOR),
      ]),
    );
    assert.deepEqual(settled.map((r) => r.status), [...people.map(() => 'fulfilled'), 'rejected']);
    assert.ok(isCandorError((settled.at(-1) as PromiseRejectedResult).reason, 'CONSENT_RESTRICTION_NOT_FOUND'));
    assert.ok(transactions.length < people.length, `${transactions.length} transactions for ${people.length + 1} changes`);
  });

  it('changes committed are answered as written even if a change listener throws', async () => {
    const { consent } = ctx.kernel;
    let thrown = 0;
    consent.onChange(() => {
      if (thrown++ === 0) throw new Error('a listener that must not throw');
    });
    const people = Array.from({ length: 5 }, () => `grouped-${randomUUID()}`);
    const results = await Promise.all(people.map((person) => consent.record(person, CHOICES, banner, CLI_ACTOR)));
    assert.ok(thrown > 0);
    await consent.load(people);
    for (const [i, person] of people.entries()) {
      assert.deepEqual((await consent.history(person)).map((e) => e.receiptId), [results[i]?.receiptId, results[i]?.receiptId]);
    }
  });

  it('a withdrawal and a choice for the same person at the same moment are written in the order they were made', async () => {
    const { consent } = ctx.kernel;
    const person = `grouped-${randomUUID()}`;
    const others = Array.from({ length: 5 }, () => `grouped-${randomUUID()}`);
    await consent.record(person, CHOICES, banner, CLI_ACTOR);
    await Promise.all([
      ...others.map((other) => consent.record(other, CHOICES, banner, CLI_ACTOR)),
      consent.record(person, [{ purpose: 'analytics.reporting', state: 'withdrawn' }], banner, CLI_ACTOR),
      consent.record(person, [{ purpose: 'personalize.profiling', state: 'refused' }], banner, CLI_ACTOR),
    ]);
    assert.equal(consent.decide(person, 'analytics.reporting').reason, 'withdrawn');
    assert.equal(consent.decide(person, 'personalize.profiling').reason, 'refused');
    await consent.load([person]);
    assert.deepEqual((await consent.history(person)).map((e) => [e.purpose, e.state]).slice(-2), [['analytics.reporting', 'withdrawn'], ['personalize.profiling', 'refused']]);
  });
});
