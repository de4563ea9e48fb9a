// The whole test suite: type check, lint, then every test file (unit tests next to the code, integration tests
// on SQLite and PostgreSQL). Extra arguments are passed to `node --test` (for example a single file).
import { spawnSync } from 'node:child_process';

const args = process.argv.slice(2);
const steps: [string, string[]][] = [];
if (args.length === 0) {
  steps.push(['tsc', ['node_modules/typescript/bin/tsc', '--noEmit']]);
  steps.push(['eslint', ['node_modules/eslint/bin/eslint.js', '--max-warnings=0', '.']]);
}
const files = args.length > 0 ? args : ['src/**/*.test.ts', 'test/**/*.test.ts'];
steps.push(['tests', ['--test', '--test-concurrency=2', '--test-reporter=spec', ...files]]);

for (const [name, argv] of steps) {
  const started = Date.now();
  const result = spawnSync(process.execPath, argv, { stdio: 'inherit' });
  if (result.status !== 0) {
    console.error(`\n${name} failed (exit ${result.status ?? result.signal})`);
    process.exit(result.status ?? 1);
  }
  if (name !== 'tests') console.log(`${name}: ok (${((Date.now() - started) / 1000).toFixed(1)} s)`);
}
