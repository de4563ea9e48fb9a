import assert from 'node:assert/strict';
import { readFileSync, statSync, symlinkSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { createEnvironment, describeEachDialect, type TestEnvironment } from '../../../test/support/databases.ts';
import { mountSmallDisk, type SmallDisk } from '../../../test/support/full-disk.ts';
import { ingestPerson, person } from '../../../test/support/subjects.ts';
import { openKernel, type Kernel } from '../../kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { isCandorError } from '../../shared/errors.ts';
import { LEDGER_FILE } from './deletion-ledger.ts';

const PAGE = 4096;

describeEachDialect('an erasure whose deletion ledger line does not fit on the disk', (dialect) => {
  let env: TestEnvironment;
  let disk: SmallDisk | null = null;
  let kernel: Kernel;
  let ledgerFile = '';

  before(async () => {
    disk = mountSmallDisk(256);
    if (!disk) return;
    env = await createEnvironment(dialect);
    // Only the ledger file is on the small disk (the SQLite database stays where it was): a link to it.
    ledgerFile = join(disk.dir, LEDGER_FILE);
    symlinkSync(ledgerFile, join(env.dataDir, LEDGER_FILE));
    kernel = await openKernel(env.config);
  });
  after(async () => {
    await kernel?.close();
    await env?.cleanup();
    disk?.unmount();
  });

  const erase = async (tag: string, requestId: string) => {
    const subject = await kernel.erasure.findSubject({ identifier: { type: 'user_id', value: person(tag).userId } });
    assert.ok(subject);
    return kernel.erasure.erase(subject, { requestId }, CLI_ACTOR);
  };
  const erasureState = async (id: string) =>
    (await kernel.storage.db.withTables<{ rights_erasures: { request_id: string; state: string } }>().selectFrom('rights_erasures').select('state').where('request_id', '=', id).executeTakeFirst())?.state;

  it('fails coded and stays pending with no torn line in the file, and completes on retry once there is space', async (t) => {
    if (!disk) return t.skip('needs a small tmpfs of its own: root and mount');
    const tags = Array.from({ length: 12 }, (_, i) => `ledgerfull${dialect}${i}`);
    for (const tag of tags) await ingestPerson(kernel, person(tag), 0);
    // Erase until the ledger's last page has less room than one more line: the next line is then a short write.
    let erased = 0;
    let lineBytes = 0;
    for (;;) {
      await erase(tags[erased] as string, `req-ledger-full-${dialect}-${erased}`);
      erased++;
      const size = statSync(ledgerFile).size;
      lineBytes = Math.max(lineBytes, size / erased);
      if (PAGE - (size % PAGE) < lineBytes * 0.9 || erased === tags.length - 1) break;
    }
    assert.ok(erased < tags.length - 1, 'the ledger reached a page boundary');
    const before = readFileSync(ledgerFile);
    disk.fill(0);

    const requestId = `req-ledger-full-${dialect}-${erased}`;
    await assert.rejects(erase(tags[erased] as string, requestId), (e) => isCandorError(e, 'RIGHTS_LEDGER_WRITE_FAILED') && e.details?.reason === 'ENOSPC');
    assert.equal(await erasureState(requestId), 'keys_pending');
    assert.deepEqual(readFileSync(ledgerFile), before, 'no torn line is left in the file');
    assert.deepEqual(await kernel.erasure.verifyLedger(), { ok: true, entries: erased + 1 });

    disk.free();
    const certificate = await kernel.erasure.complete(requestId, CLI_ACTOR);
    assert.equal(certificate?.status, 'complete');
    assert.equal(await erasureState(requestId), 'done');
    assert.equal(readFileSync(ledgerFile, 'utf8').trimEnd().split('\n').length, erased + 1);
    assert.deepEqual(await kernel.erasure.verifyLedger(), { ok: true, entries: erased + 1 });
    // The next erasure goes through as usual.
    await erase(tags[erased + 1] as string, `req-ledger-full-${dialect}-${erased + 1}`);
    assert.deepEqual(await kernel.erasure.verifyLedger(), { ok: true, entries: erased + 2 });
  });
});

describeEachDialect('a deletion ledger file with a torn last line, as a full disk left it before', (dialect) => {
  let env: TestEnvironment;

  before(async () => {
    env = await createEnvironment(dialect);
  });
  after(async () => {
    await env?.cleanup();
  });

  it('is cut back at the next start, which writes the missing line again from the database; erasures go on', async () => {
    const ledgerFile = join(env.dataDir, LEDGER_FILE);
    const tags = [`torn${dialect}a`, `torn${dialect}b`, `torn${dialect}c`];
    let kernel = await openKernel(env.config);
    try {
      for (const tag of tags) await ingestPerson(kernel, person(tag), 0);
      for (const [i, tag] of tags.slice(0, 2).entries()) {
        const subject = await kernel.erasure.findSubject({ identifier: { type: 'user_id', value: person(tag).userId } });
        assert.ok(subject);
        await kernel.erasure.erase(subject, { requestId: `req-torn-${dialect}-${i}` }, CLI_ACTOR);
      }
    } finally {
      await kernel.close();
    }
    // The last line cut short, its newline gone: what an unchecked short write on a full disk left.
    const whole = readFileSync(ledgerFile, 'utf8');
    const lastStart = whole.trimEnd().lastIndexOf('\n') + 1;
    truncateSync(ledgerFile, lastStart + 200);

    kernel = await openKernel(env.config);
    try {
      assert.equal(readFileSync(ledgerFile, 'utf8'), whole, 'the torn line cut away and the entry written again from the database');
      assert.deepEqual(await kernel.erasure.verifyLedger(), { ok: true, entries: 2 });
      const subject = await kernel.erasure.findSubject({ identifier: { type: 'user_id', value: person(tags[2] as string).userId } });
      assert.ok(subject);
      await kernel.erasure.erase(subject, { requestId: `req-torn-${dialect}-2` }, CLI_ACTOR);
      assert.deepEqual(await kernel.erasure.verifyLedger(), { ok: true, entries: 3 });
    } finally {
      await kernel.close();
    }
  });
});
