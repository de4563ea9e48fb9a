// A consent read whose snapshot predates another process's withdrawal but whose answer arrives after this process
// noticed that commit (PostgreSQL reads are asynchronous; another batch's load looked at the database meanwhile) must
// not be cached as fresh: the withdrawal is in force here from the next load, not after the cache's 60 s age limit.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { it } from 'node:test';
import { createEnvironment, describeEachDialect } from '../../../test/support/databases.ts';
import { openKernel } from '../../kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { openStorage } from '../../storage/index.ts';
import { ConsentRepo } from './consent.repo.ts';
import { Consent } from './index.ts';

const PURPOSE = 'personalize.profiling';

describeEachDialect('consent: a load that spans another process\'s withdrawal', (dialect) => {
  it('reads the subject again at the next load', { timeout: 60_000 }, async (t) => {
    const env = await createEnvironment(dialect);
    t.after(() => env.cleanup());
    const kernel = await openKernel(env.config);
    t.after(() => kernel.close());
    const { storage, audit, keyring, taxonomy } = kernel;
    const subject = `user-${randomUUID()}`;
    const other = `user-${randomUUID()}`;
    const mine = await Consent.open({ storage, audit, keyring, taxonomy, expiryMonths: 13 });
    await mine.record(subject, [{ purpose: PURPOSE, state: 'given' }], { mechanism: 'banner_save' }, CLI_ACTOR);
    mine.forgetSubject(subject);
    const elsewhere = await openStorage(env.config);
    t.after(() => elsewhere.close());
    const theirs = await Consent.open({ storage: elsewhere, audit, keyring, taxonomy, expiryMonths: 13 });

    // The read of `subject` answers late: meanwhile the other process withdraws, its commit is noticed here (another
    // batch's load looks at the database), and only then does the read's answer (taken before) arrive.
    const read = ConsentRepo.prototype.currentAndRestrictions;
    let late = true;
    t.mock.method(ConsentRepo.prototype, 'currentAndRestrictions', async function (this: ConsentRepo, subjects: readonly string[]) {
      const answer = await read.call(this, subjects);
      if (late && subjects.includes(mine.pseudonym(subject))) {
        late = false;
        await theirs.record(subject, [{ purpose: PURPOSE, state: 'withdrawn' }], { mechanism: 'api' }, CLI_ACTOR);
        // PostgreSQL's commit notice arrives a moment after the commit.
        await new Promise((resolve) => setTimeout(resolve, dialect === 'postgres' ? 300 : 5));
        await mine.load([other]);
      }
      return answer;
    });
    await mine.load([subject]);
    assert.equal(mine.decide(subject, PURPOSE).allowed, true, 'the late answer, read before the withdrawal');
    t.mock.restoreAll();
    await new Promise((resolve) => setTimeout(resolve, 5));
    await mine.load([subject]);
    assert.deepEqual([mine.decide(subject, PURPOSE).allowed, mine.decide(subject, PURPOSE).reason], [false, 'withdrawn']);
  });
});
