import { after, before } from 'node:test';
import { main } from '../../src/cli/main.ts';
import type { DialectName } from '../../src/storage/index.ts';
import { createEnvironment, type TestEnvironment } from './databases.ts';

export interface CliRun {
  code: number;
  out: string;
  err: string;
}

/**
 * A fresh environment for the suite and a `candor(...args)` that runs the CLI in process against it (with
 * --data-dir and, on PostgreSQL, --database-url), capturing its output.
 */
export function useCli(dialect: DialectName): { readonly env: TestEnvironment; candor: (...args: string[]) => Promise<CliRun> } {
  const holder = {} as { env: TestEnvironment; candor: (...args: string[]) => Promise<CliRun> };
  before(async () => {
    holder.env = await createEnvironment(dialect);
  });
  after(async () => {
    await holder.env?.cleanup();
  });
  holder.candor = async (...args: string[]) => {
    const out: string[] = [];
    const err: string[] = [];
    const env = holder.env;
    const global = ['--data-dir', env.dataDir, ...(env.databaseUrl ? ['--database-url', env.databaseUrl] : [])];
    const code = await main(['node', 'candor', ...global, ...args], (l) => out.push(l), (l) => err.push(l));
    return { code, out: out.join('\n'), err: err.join('\n') };
  };
  return holder;
}
