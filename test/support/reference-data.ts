// The public reference data sets live beside the project in ../shared/data (CI has them there too); tests read
// them in place and fail — never skip — when they are missing.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const ROOT = join(import.meta.dirname, '..', '..', '..', 'shared', 'data');

export function referencePath(...parts: string[]): string {
  const path = join(ROOT, ...parts);
  if (!existsSync(path)) throw new Error(`reference data missing: ${path} (expected ../shared/data beside the project)`);
  return path;
}

export function readReference(...parts: string[]): string {
  return readFileSync(referencePath(...parts), 'utf8');
}
