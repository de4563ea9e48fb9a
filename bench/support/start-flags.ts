import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** The Node flags `npm start` runs the server with (read from package.json), so benchmarks measure that server. */
export function startFlags(): string[] {
  const pkg = JSON.parse(readFileSync(join(import.meta.dirname, '..', '..', 'package.json'), 'utf8')) as { scripts: { start: string } };
  return pkg.scripts.start.split(/\s+/).filter((arg) => arg.startsWith('--'));
}
