import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { rightsRequests } from '../../../test/support/rights.ts';
import { buildServer, type CandorServer } from '../../http/server.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { isCandorError } from '../../shared/errors.ts';
import type { Identity } from '../identity/index.ts';
import { Mailer } from './mailer.ts';
import type { RequestsTables } from './requests.repo.ts';
import type { RightsRequests } from './requests.ts';

/** The code in the outbox message about a request. */
function codeFromOutbox(dir: string, requestId: string): string {
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.eml'))) {
    const text = readFileSync(join(dir, file), 'utf8');
    const match = /Your code is (\d{6})/.exec(text);
    if (text.includes(requestId) && match) return match[1] as string;
  }
  throw new Error(`no code for ${requestId} in the outbox`);
}

/** What a verification answered: the error's code (`none` when it succeeded, `server` for an uncoded failure). */
/** The database's refusal that refuseEvents sets up. */
const REFUSED = 'no space left (test)';

/** What a verification answered: its error code, `none` when it succeeded, `refused` when the database refused it. */
const answered = async (work: Promise<unknown>): Promise<string> => {
  try {
    await work;
    return 'none';
  } catch (error) {
    if (isCandorError(error)) return error.code;
    if (error instanceof Error && error.message.includes(REFUSED)) return 'refused';
    throw error;
  }
};

describeEachDialect('data-subject request verification when the server fails to record it', (dialect) => {
  const ctx = useKernel(dialect);
  let server: CandorServer;
  let writeKey = '';
  let outbox = '';
  let client = 0;
  let mailer: Mailer;
  let rights: RightsRequests;
  const person = async (userId: string, email: string) => {
    const identified = await server.app.inject({
      method: 'POST',
      url: '/v1/identify',
      headers: { authorization: `Basic ${Buffer.from(`${writeKey}:`).toString('base64')}`, 'content-type': 'application/json' },
      payload: JSON.stringify({ userId, traits: { email, first_name: 'Ada' } }),
    });
    assert.equal((identified.json() as { results: { status: string }[] }).results[0]?.status, 'stored', identified.body);
  };
  const started = async (type: string, email: string) => {
    const answer = await rights.start({ type, email, client: `10.77.${dialect.length}.${++client}` });
    await rights.settled();
    return { id: answer.requestId, code: codeFromOutbox(outbox, answer.requestId) };
  };
  const row = (id: string) => ctx.kernel.storage.db.withTables<RequestsTables>().selectFrom('rights_requests').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
  const attempts = async (id: string) => Number((await row(id)).code_attempts);
  /**
   * Makes the database refuse every new request event, as a full disk refuses a write: the failed attempt's event
   * (after its count) and the verified move (the request's change, its event and audit entry in one transaction) fail.
   */
  const refuseEvents = async () => {
    const raw = ctx.kernel.storage.raw;
    if (dialect === 'postgres') {
      await raw.run(`CREATE FUNCTION test_refuse_event() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION '${REFUSED}'; END $$`);
      await raw.run('CREATE TRIGGER test_refuse_event BEFORE INSERT ON rights_request_events FOR EACH ROW EXECUTE FUNCTION test_refuse_event()');
    } else {
      await raw.run(`CREATE TRIGGER test_refuse_event BEFORE INSERT ON rights_request_events BEGIN SELECT RAISE(ABORT, '${REFUSED}'); END`);
    }
  };
  const acceptEvents = async () => {
    const raw = ctx.kernel.storage.raw;
    if (dialect === 'postgres') {
      await raw.run('DROP TRIGGER test_refuse_event ON rights_request_events');
      await raw.run('DROP FUNCTION test_refuse_event()');
    } else {
      await raw.run('DROP TRIGGER test_refuse_event');
    }
  };

  before(async () => {
    server = await buildServer(ctx.kernel);
    writeKey = (await ctx.kernel.access.createWriteKey('web', null, CLI_ACTOR)).secret;
    outbox = mkdtempSync(join(tmpdir(), 'candor-outbox-'));
    mailer = new Mailer({ smtpUrl: '', from: 'privacy@candor-example.dev', outboxDir: outbox });
    rights = rightsRequests(ctx.kernel, { mailer });
  });
  after(async () => {
    await rights.close();
    await server.app.close();
    rmSync(outbox, { recursive: true, force: true });
  });

  it('uses up none of the attempts of a right code whose verification the database refused, one after another or at once', async () => {
    await person('vf-1', 'vf1@candor-example.dev');
    const { id, code } = await started('restriction', 'vf1@candor-example.dev');
    await refuseEvents();
    try {
      for (let i = 0; i < 4; i++) assert.equal(await answered(rights.verify(id, code)), 'refused');
      assert.deepEqual(await Promise.all(Array.from({ length: 5 }, () => answered(rights.verify(id, code)))), Array.from({ length: 5 }, () => 'refused'));
      assert.deepEqual([(await row(id)).state, await attempts(id)], ['verifying', 0]);
    } finally {
      await acceptEvents();
    }
    // Once the database writes again, the same code verifies the request, its attempt counted with the verification.
    assert.equal(await answered(rights.verify(id, code)), 'none');
    assert.notEqual((await row(id)).state, 'verifying');
    assert.equal(await attempts(id), 1);
  });

  it('counts a wrong code or a wrong second identifier even when what follows its count fails, parallel ones included, up to three', async () => {
    await person('vf-2', 'vf2@candor-example.dev');
    const { id, code } = await started('access', 'vf2@candor-example.dev');
    const wrong = code === '000000' ? '000001' : '000000';
    const right = { secondIdentifier: { type: 'user_id', value: 'vf-2' } };
    await refuseEvents();
    try {
      assert.equal(await answered(rights.verify(id, wrong, right)), 'refused');
      assert.equal(await attempts(id), 1);
      assert.equal(await answered(rights.verify(id, code, { secondIdentifier: { type: 'user_id', value: 'someone-else' } })), 'refused');
      assert.equal(await attempts(id), 2);
      // A right code and identifier whose verification is refused leave the count where it was.
      assert.equal(await answered(rights.verify(id, code, right)), 'refused');
      assert.equal(await attempts(id), 2);
      const answers = await Promise.all(Array.from({ length: 10 }, () => answered(rights.verify(id, wrong, right))));
      assert.deepEqual(answers.sort(), [...Array.from({ length: 9 }, () => 'RIGHTS_VERIFICATION_LOCKED'), 'refused']);
      assert.equal(await attempts(id), 3);
    } finally {
      await acceptEvents();
    }
    assert.equal(await answered(rights.verify(id, code, right)), 'RIGHTS_VERIFICATION_LOCKED');
    assert.deepEqual([(await row(id)).state, await attempts(id)], ['verifying', 3]);
  });

  it('answers a right code locked when wrong ones used up the attempts while its verification was under way', async () => {
    await person('vf-3', 'vf3@candor-example.dev');
    const { id, code } = await started('restriction', 'vf3@candor-example.dev');
    const wrong = code === '000000' ? '000001' : '000000';
    // The right code's verification is held after its comparison, before it records anything, until released.
    let reached: () => void = () => {};
    let release: () => void = () => {};
    const atCanonical = new Promise<void>((resolve) => (reached = resolve));
    const released = new Promise<void>((resolve) => (release = resolve));
    const identity = new Proxy(ctx.kernel.identity, {
      get(target, property) {
        if (property === 'canonical') {
          return async (profileId: string) => {
            reached();
            await released;
            return target.canonical(profileId);
          };
        }
        const value = Reflect.get(target, property, target) as unknown;
        return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
      },
    }) as Identity;
    const held = rightsRequests(ctx.kernel, { mailer, identity });
    try {
      const verifying = answered(held.verify(id, code));
      await atCanonical;
      const wrongs = [];
      for (let i = 0; i < 3; i++) wrongs.push(await answered(rights.verify(id, wrong)));
      assert.deepEqual(wrongs, ['RIGHTS_CODE_INVALID', 'RIGHTS_CODE_INVALID', 'RIGHTS_CODE_INVALID']);
      release();
      // Three wrong codes were compared and counted: a fourth comparison, even a right one, must not count.
      assert.equal(await verifying, 'RIGHTS_VERIFICATION_LOCKED');
    } finally {
      release();
      await held.close();
    }
    assert.deepEqual([(await row(id)).state, await attempts(id)], ['verifying', 3]);
  });
});
