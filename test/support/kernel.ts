import { after, before } from 'node:test';
import { openKernel, type Kernel } from '../../src/kernel.ts';
import type { DialectName } from '../../src/storage/index.ts';
import { createEnvironment, type TestEnvironment } from './databases.ts';

/** A kernel on a fresh database of the dialect, opened before the suite's tests and closed after. */
export function useKernel(dialect: DialectName): { readonly kernel: Kernel; readonly env: TestEnvironment } {
  const holder = {} as { kernel: Kernel; env: TestEnvironment };
  before(async () => {
    holder.env = await createEnvironment(dialect);
    holder.kernel = await openKernel(holder.env.config);
  });
  after(async () => {
    await holder.kernel?.close();
    await holder.env?.cleanup();
  });
  return holder;
}
