import type { Kernel } from '../../src/kernel.ts';

export interface TransactionHooks {
  /** Before each statement of a transaction, with its parameters (throwing fails the statement). */
  statement?: (text: string, params: readonly unknown[]) => Promise<void> | void;
  /** Once a transaction's work is done, before its commit, with its statements (throwing rolls it back). */
  commit?: (statements: readonly string[]) => void;
  /** Gets the statements of every transaction begun. */
  transactions?: string[][];
  /** Gets the error of every statement that failed. */
  errors?: unknown[];
}

/** Runs `fn` with a kernel's raw transactions passed through `hooks`. */
export async function intercepted<T>(kernel: Kernel, hooks: TransactionHooks, fn: () => Promise<T>): Promise<T> {
  const raw = kernel.storage.raw;
  const original = raw.transaction.bind(raw);
  raw.transaction = async (work) =>
    original(async (tx) => {
      const statements: string[] = [];
      hooks.transactions?.push(statements);
      const watched = async <R>(text: string, params: readonly unknown[], statement: () => Promise<R>): Promise<R> => {
        statements.push(text);
        await hooks.statement?.(text, params);
        try {
          return await statement();
        } catch (error) {
          hooks.errors?.push(error);
          throw error;
        }
      };
      const out = await work({
        all: (text, params = []) => watched(text, params, () => tx.all(text, params)),
        run: (text, params = []) => watched(text, params, () => tx.run(text, params)),
      });
      hooks.commit?.(statements);
      return out;
    });
  try {
    return await fn();
  } finally {
    raw.transaction = original;
  }
}
