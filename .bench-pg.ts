import pg from 'pg';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '/work/main/src/config/index.ts';
import { openKernel } from '/work/main/src/kernel.ts';
const admin = 'postgres://postgres@127.0.0.1:5432/postgres';
const name = `candor_idbench_${process.pid}`;
const a = new pg.Client({ connectionString: admin }); await a.connect(); await a.query(`create database ${name}`); await a.end();
const url = `postgres://postgres@127.0.0.1:5432/${name}`;
try {
  const kernel = await openKernel(loadConfig({ environment: { CANDOR_DATA_DIR: mkdtempSync(join(tmpdir(), 'idb-')), CANDOR_DATABASE_URL: url, NODE_ENV: 'test', CANDOR_LOG_LEVEL: 'silent' } }));
  const { identity, storage } = kernel;
  const N = 100, B = 100;
  const batches = Array.from({ length: N }, (_, b) => Array.from({ length: B }, (_, i) => ({ identifiers: [{ type: 'anonymous_id', value: `a-${b}-${i}` }, { type: 'user_id', value: `u-${b}-${i}` }], source: 'web', at: new Date().toISOString() })));
  const time = async (label: string, fn: (items: typeof batches[number]) => Promise<unknown>) => {
    const t = performance.now();
    for (const items of batches) await fn(items);
    const ms = performance.now() - t;
    console.log(`${label}: ${((N * B) / (ms / 1000)).toFixed(0)} events/s (${(ms / N).toFixed(2)} ms/batch)`);
  };
  const stats = new Map<string, number>();
  const wrap = (tx: any) => ({ all: async (t: string, p: unknown[]) => { const s = performance.now(); try { return await tx.all(t, p); } finally { stats.set(t.slice(0, 60), (stats.get(t.slice(0, 60)) ?? 0) + performance.now() - s); } }, run: async (t: string, p: unknown[]) => { const s = performance.now(); try { return await tx.run(t, p); } finally { stats.set(t.slice(0, 60), (stats.get(t.slice(0, 60)) ?? 0) + performance.now() - s); } } });
  await time("resolve new ids", (items) => storage.raw.transaction((tx) => identity.resolveBatch(wrap(tx), items)));
  console.log([...stats].sort((a, b) => b[1] - a[1]).slice(0, 6));
  await time('resolve known ids (db)', (items) => storage.raw.transaction((tx) => identity.resolveBatch(tx, items)));
  await c.query('analyze');
  await time('resolve known ids (db, after analyze)', (items) => storage.raw.transaction((tx) => identity.resolveBatch(tx, items)));
  await kernel.close();
} finally {
  const d = new pg.Client({ connectionString: admin }); await d.connect(); await d.query(`drop database if exists ${name} with (force)`); await d.end();
}
