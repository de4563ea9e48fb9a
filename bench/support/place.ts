// A fresh place to store for a benchmark run: a temporary data directory, and on PostgreSQL a fresh database,
// dropped afterwards.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';

export const PG_URL = process.env.CANDOR_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export interface Place {
  dataDir: string;
  databaseUrl: string;
  drop: () => Promise<void>;
}

export async function place(dialect: 'sqlite' | 'postgres', label: string): Promise<Place> {
  const dataDir = mkdtempSync(join(tmpdir(), `candor-bench-${label}-`));
  if (dialect === 'sqlite') return { dataDir, databaseUrl: '', drop: async () => rmSync(dataDir, { recursive: true, force: true }) };
  const name = `bench_${label.replace(/\W/g, '_')}_${process.pid}_${Date.now()}`;
  const admin = new pg.Client({ connectionString: PG_URL });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } catch (error) {
    rmSync(dataDir, { recursive: true, force: true });
    throw error;
  } finally {
    await admin.end();
  }
  const url = new URL(PG_URL);
  url.pathname = `/${name}`;
  return {
    dataDir,
    databaseUrl: url.toString(),
    drop: async () => {
      rmSync(dataDir, { recursive: true, force: true });
      const c = new pg.Client({ connectionString: PG_URL });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}
