import assert from 'node:assert/strict';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { createEnvironment, describeEachDialect, type TestEnvironment } from '../../../test/support/databases.ts';
import { main } from '../../cli/main.ts';
import { openKernel } from '../../kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { backupDatabase } from './index.ts';

describeEachDialect('backup file mode', (dialect) => {
  let env: TestEnvironment;
  let umask = 0;

  before(async () => {
    env = await createEnvironment(dialect);
    await (await openKernel(env.config)).close();
    // The usual umask, under which a file created without an explicit mode is readable by everyone.
    umask = process.umask(0o022);
  });
  after(async () => {
    process.umask(umask);
    await env?.cleanup();
  });

  it('writes the backup readable and writable by its owner only, whatever the umask', async () => {
    const file = join(env.dataDir, 'backup-api.db');
    await backupDatabase(env.config, file, CLI_ACTOR);
    assert.equal(statSync(file).mode & 0o777, 0o600);
  });

  it('does the same through `candor backup FILE`, leaving no partial file behind', async () => {
    const file = join(env.dataDir, 'backup-cli.db');
    const lines: string[] = [];
    const code = await main(['node', 'candor', '--data-dir', env.dataDir, ...(env.databaseUrl ? ['--database-url', env.databaseUrl] : []), 'backup', file], (l) => lines.push(l), (l) => lines.push(l));
    assert.equal(code, 0, lines.join('\n'));
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.deepEqual(
      readdirSync(env.dataDir).filter((f) => f.includes('.partial')),
      [],
    );
  });
});
