import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { buildServer, type CandorServer } from '../server.ts';

const NUL = 'a\u0000b';
const LONE_SURROGATE = 'a\ud800b';
const UNKNOWN_REQUEST = 'rr_aaaaaaaaaaaaa0123456789abcdef';

interface Issue {
  in: string;
  path: string;
  rule: string;
}

describeEachDialect('admin API: text with a control character or half a surrogate pair', (dialect) => {
  const ctx = useKernel(dialect);
  let server: CandorServer;
  let token = '';
  let profile = '';
  let n = 0;
  const call = (method: 'GET' | 'POST' | 'PUT', url: string, payload?: unknown) =>
    server.app.inject({ method, url, headers: { authorization: `Bearer ${token}`, ...(payload === undefined ? {} : { 'content-type': 'application/json' }) }, ...(payload === undefined ? {} : { payload: JSON.stringify(payload) }) });
  const q = (text: string) => encodeURIComponent(text);

  /** Each admin text field: the request carrying a text there, where the answer names it, and what a usable text gets. */
  const fields: { name: string; send: (text: string) => ReturnType<typeof call>; at: string; ok: number; prose?: boolean; query?: boolean }[] = [
    { name: 'token label', send: (t) => call('POST', '/v1/admin/tokens', { role: 'analyst', label: t }), at: 'body /label', ok: 201 },
    { name: 'write key label', send: (t) => call('POST', '/v1/admin/write-keys', { source: `web${n++}`, label: t }), at: 'body /label', ok: 201 },
    { name: 'data use name', send: (t) => call('POST', '/v1/admin/taxonomy/data-uses', { key: `custom.n${n++}`, name: t, description: 'd', parentKey: 'analytics' }), at: 'body /name', ok: 201 },
    { name: 'data use description', send: (t) => call('POST', '/v1/admin/taxonomy/data-uses', { key: `custom.d${n++}`, name: 'n', description: t, parentKey: 'analytics' }), at: 'body /description', ok: 201, prose: true },
    { name: 'data category parent', send: (t) => call('POST', '/v1/admin/taxonomy/data-categories', { key: `custom.c${n++}`, name: 'n', description: 'd', parentKey: t }), at: 'body /parentKey', ok: 400 },
    { name: 'purpose description', send: (t) => call('PUT', '/v1/admin/consent/purposes/analytics.reporting', { basis: 'consent', description: t }), at: 'body /description', ok: 200, prose: true },
    { name: 'notice text', send: (t) => call('POST', '/v1/admin/consent/notices', { text: t, purposes: [{ purpose: 'analytics.reporting', categories: ['user.behavior'] }] }), at: 'body /text', ok: 201, prose: true },
    { name: 'profile look-up value', send: (t) => call('POST', '/v1/admin/profiles/lookup', { type: 'user_id', value: t }), at: 'body /value', ok: 404 },
    { name: 'denial reason', send: (t) => call('POST', `/v1/admin/rights/requests/${UNKNOWN_REQUEST}/deny`, { reason: t }), at: 'body /reason', ok: 404, prose: true },
    { name: 'extension reason', send: (t) => call('POST', `/v1/admin/rights/requests/${UNKNOWN_REQUEST}/extend`, { reason: t }), at: 'body /reason', ok: 404, prose: true },
    { name: 'receipt id', send: (t) => call('GET', `/v1/admin/subjects/${profile}/consent/receipts/${q(t)}`), at: 'params /receiptId', ok: 404, query: true },
    { name: 'trait history key', send: (t) => call('GET', `/v1/admin/profiles/${profile}/history?key=${q(t)}`), at: 'querystring /key', ok: 200, query: true },
    { name: 'trait history cursor', send: (t) => call('GET', `/v1/admin/profiles/${profile}/history?before=${q(t)}`), at: 'querystring /before', ok: 400, query: true },
    { name: 'refusals source', send: (t) => call('GET', `/v1/admin/collect/refusals?source=${q(t)}`), at: 'querystring /source', ok: 200, query: true },
    { name: 'audit action', send: (t) => call('GET', `/v1/admin/audit?action=${q(t)}`), at: 'querystring /action', ok: 200, query: true },
  ];

  before(async () => {
    server = await buildServer(ctx.kernel);
    token = (await ctx.kernel.access.createToken('owner', null, CLI_ACTOR)).secret;
    const [resolved] = await ctx.kernel.storage.raw.transaction((tx) => ctx.kernel.identity.resolveBatch(tx, [{ identifiers: [{ type: 'user_id', value: 'u-text' }], source: 'web', at: new Date().toISOString() }]));
    profile = resolved?.profileId as string;
  });
  after(async () => {
    await server.app.close();
  });

  it('refuses a NUL in every free-text field and filter with REQUEST_VALIDATION_FAILED naming the field (PostgreSQL answered 500)', async () => {
    for (const field of fields) {
      const response = await field.send(NUL);
      assert.equal(response.statusCode, 400, `${field.name}: ${response.body}`);
      const problem = response.json() as { code: string; details: { errors: Issue[] } };
      assert.equal(problem.code, 'REQUEST_VALIDATION_FAILED', field.name);
      assert.deepEqual(problem.details.errors.map((e) => `${e.in} ${e.path} ${e.rule}`), [`${field.at} format`], field.name);
      assert.ok(!response.body.includes(NUL), `${field.name}: the answer does not repeat the value`);
    }
  });

  it('refuses half of a surrogate pair and other control characters in body text (both databases stored U+FFFD or the character)', async () => {
    for (const field of fields.filter((f) => !f.query)) {
      for (const text of [LONE_SURROGATE, 'a\u001bb', 'a\u007fb']) {
        const response = await field.send(text);
        assert.equal(response.statusCode, 400, `${field.name}: ${response.body}`);
        assert.equal((response.json() as { code: string }).code, 'REQUEST_VALIDATION_FAILED', field.name);
      }
    }
    // Nothing refused was stored: the owner's token is the only credential.
    assert.equal((await ctx.kernel.access.list()).length, 1);
  });

  it('takes line breaks and tabs in prose only, and a usable text everywhere', async () => {
    for (const field of fields) {
      const lines = await field.send('first line\n\tsecond line');
      if (field.prose) assert.equal(lines.statusCode, field.ok, `${field.name}: ${lines.body}`);
      else assert.equal((lines.json() as { code: string }).code, 'REQUEST_VALIDATION_FAILED', `${field.name}: ${lines.body}`);
      // Letters beyond the Basic Multilingual Plane are a surrogate pair, well-formed.
      const usable = await field.send('Café 🚀 «n°1»');
      assert.equal(usable.statusCode, field.ok, `${field.name}: ${usable.body}`);
      if (usable.statusCode === 400) assert.notEqual((usable.json() as { code: string }).code, 'REQUEST_VALIDATION_FAILED', field.name);
    }
    const labels = (await ctx.kernel.access.list()).map((credential) => credential.label);
    assert.ok(labels.includes('Café 🚀 «n°1»'), 'a label is stored as given');
  });

  it('takes only a subject pseudonym as the audit log filter, so no typed value (an e-mail address) is written into the log', async () => {
    const typed = await call('GET', `/v1/admin/audit?subject=${q('ada.secret@lovelace.dev')}`);
    assert.equal(typed.statusCode, 400, typed.body);
    const problem = typed.json() as { code: string; details: { errors: Issue[] } };
    assert.equal(problem.code, 'REQUEST_VALIDATION_FAILED');
    assert.deepEqual(problem.details.errors.map((e) => `${e.in} ${e.path} ${e.rule}`), ['querystring /subject pattern']);
    assert.equal((await call('GET', `/v1/admin/audit?subject=${q(NUL)}`)).statusCode, 400);
    const pseudonym = ctx.kernel.keyring.pseudonym('subject', profile);
    assert.equal((await call('GET', `/v1/admin/audit?subject=${pseudonym}`)).statusCode, 200);
    const reads = await ctx.kernel.audit.list({ action: 'api.personal_data.read', limit: 1000 });
    assert.ok(reads.some((e) => e.subject === pseudonym), 'the read by pseudonym is audited under it');
    assert.ok(!reads.some((e) => e.subject?.includes('@')), 'no typed value became an entry subject');
  });

  it('refuses a NUL in the catalog statistics filters', async () => {
    for (const filter of ['source', 'event']) {
      const response = await call('GET', `/v1/admin/catalog/stats?${filter}=%00`);
      assert.equal(response.statusCode, 400, response.body);
      const problem = response.json() as { code: string; details: { errors: Issue[] } };
      assert.equal(problem.code, 'REQUEST_VALIDATION_FAILED');
      assert.deepEqual(problem.details.errors.map((e) => `${e.in} ${e.path} ${e.rule}`), [`querystring /${filter} format`]);
      assert.equal((await call('GET', `/v1/admin/catalog/stats?${filter}=Order%20Completed`)).statusCode, 200);
    }
  });

  it('declares a text format, a pattern or a list of values for every string an admin request carries', () => {
    const spec = server.app.swagger() as { paths: Record<string, Record<string, Operation>> };
    const loose: string[] = [];
    for (const [path, operations] of Object.entries(spec.paths)) {
      if (!path.startsWith('/v1/admin/')) continue;
      for (const [method, operation] of Object.entries(operations)) {
        for (const parameter of operation.parameters ?? []) unrestricted(parameter.schema, `${method} ${path} ${parameter.in} ${parameter.name}`, loose);
        for (const [type, content] of Object.entries(operation.requestBody?.content ?? {})) unrestricted(content.schema, `${method} ${path} body(${type})`, loose);
      }
    }
    assert.deepEqual(loose, []);
  });
});

interface Schema {
  type?: string | string[];
  format?: string;
  pattern?: string;
  enum?: unknown[];
  const?: unknown;
  properties?: Record<string, Schema>;
  items?: Schema;
  additionalProperties?: Schema | boolean;
  anyOf?: Schema[];
  oneOf?: Schema[];
}
interface Operation {
  parameters?: { in: string; name: string; schema: Schema }[];
  requestBody?: { content: Record<string, { schema: Schema }> };
}

/** Collects the places in a schema where any string would be taken. */
function unrestricted(schema: Schema | undefined, at: string, found: string[]): void {
  if (schema === undefined) return;
  const types = Array.isArray(schema.type) ? schema.type : [schema.type];
  if (types.includes('string') && schema.format === undefined && schema.pattern === undefined && schema.enum === undefined && schema.const === undefined) found.push(at);
  for (const [name, property] of Object.entries(schema.properties ?? {})) unrestricted(property, `${at}/${name}`, found);
  unrestricted(schema.items, `${at}[]`, found);
  if (typeof schema.additionalProperties === 'object') unrestricted(schema.additionalProperties, `${at}/*`, found);
  for (const alternative of [...(schema.anyOf ?? []), ...(schema.oneOf ?? [])]) unrestricted(alternative, at, found);
}
