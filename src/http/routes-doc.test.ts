import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { useKernel } from '../../test/support/kernel.ts';
import { STAFF_ROLES } from '../modules/access/index.ts';
import { buildServer, type CandorServer } from './server.ts';

/** One route as docs/architecture.md's routes table describes it. */
interface DocumentedRoute {
  audience: string;
  roles: string[];
  purpose: string;
  personalData: boolean;
}

/**
 * The rows of the "Routes" table, one entry per method and path. A cell names routes in backticks, separated by commas:
 * `METHOD /path` in full, `/path` with the method before it, or `/segment`, which replaces the last segment of the path
 * before it (`POST /v1/admin/rights/requests/:id/approve`, `/retry`).
 */
function documentedRoutes(markdown: string): Map<string, DocumentedRoute> {
  const start = markdown.indexOf('### Routes');
  assert.ok(start >= 0, 'docs/architecture.md has a "### Routes" section');
  const section = markdown.slice(start, markdown.indexOf('\n## ', start));
  const routes = new Map<string, DocumentedRoute>();
  for (const line of section.split('\n')) {
    if (!line.startsWith('| `')) continue;
    const [names = '', audience = '', roles = '', purpose = '', personal = ''] = line.split('|').slice(1).map((cell) => cell.trim());
    const documented: DocumentedRoute = {
      audience,
      roles: roles === 'all staff roles' ? [...STAFF_ROLES] : roles.replace(/\([^)]*\)/g, '').split(',').map((r) => r.trim()).filter((r) => r && r !== 'customer session'),
      purpose: purpose.replace(/`/g, ''),
      personalData: personal === 'yes',
    };
    let method = '';
    let path = '';
    for (const [, name = ''] of names.matchAll(/`([^`]+)`/g)) {
      const full = /^([A-Z]+) (\/\S*)$/.exec(name);
      if (full) [, method = '', path = ''] = full;
      else if (/^\/[^/]+$/.test(name) && path.split('/').length > 2) path = path.replace(/\/[^/]+$/, name);
      else path = name;
      assert.ok(method, `row names ${name} without a method: ${line}`);
      const key = `${method} ${path}`;
      assert.ok(!routes.has(key), `${key} is in the routes table twice`);
      routes.set(key, documented);
    }
  }
  return routes;
}

describe('docs/architecture.md routes table', () => {
  const ctx = useKernel('sqlite');
  let server: CandorServer;
  before(async () => {
    server = await buildServer(ctx.kernel);
  });
  after(async () => {
    await server.app.close();
  });

  it('names every registered route with its audience, roles, purpose and personal-data flag, and no other', () => {
    const documented = documentedRoutes(readFileSync(new URL('../../docs/architecture.md', import.meta.url), 'utf8'));
    const problems: string[] = [];
    const served = new Set<string>();
    for (const route of server.routes) {
      const key = `${route.method} ${route.url}`;
      served.add(key);
      const doc = documented.get(key);
      if (!doc) {
        problems.push(`missing: ${key}`);
        continue;
      }
      const access = route.access;
      const actual = { audience: access?.audience, roles: [...(access?.roles ?? [])].sort(), purpose: access?.purpose, personalData: access?.personalData === true };
      const expected = { audience: doc.audience, roles: [...doc.roles].sort(), purpose: doc.purpose, personalData: doc.personalData };
      if (JSON.stringify(actual) !== JSON.stringify(expected)) problems.push(`differs: ${key}: served ${JSON.stringify(actual)}, documented ${JSON.stringify(expected)}`);
    }
    for (const key of documented.keys()) if (!served.has(key)) problems.push(`documented but not served: ${key}`);
    assert.deepEqual(problems, []);
  });
});
