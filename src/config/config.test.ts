import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { tempDir } from '../../test/support/temp-dir.ts';
import { isCandorError } from '../shared/errors.ts';
import { describeConfig, loadConfig } from './index.ts';

describe('configuration', () => {
  it('uses documented defaults: port 8080, SQLite in ./.candor, key file inside it', () => {
    const config = loadConfig({ environment: {} });
    assert.equal(config.port, 8080);
    assert.equal(config.host, '127.0.0.1');
    assert.ok(config.dataDir.endsWith('.candor'));
    assert.equal(config.keyFile, join(config.dataDir, 'master.key'));
    assert.equal(config.databaseUrl, '');
    assert.equal(config.sources.port, 'default');
  });

  it('layers file < environment < flags', () => {
    const dir = tempDir('candor-config-');
    const file = join(dir, 'c.json');
    writeFileSync(file, JSON.stringify({ port: 9000, host: '0.0.0.0', logLevel: 'debug' }));
    const config = loadConfig({ configFile: file, environment: { CANDOR_PORT: '9001', CANDOR_LOG_LEVEL: 'warn' }, flags: { port: '9002' } });
    assert.equal(config.host, '0.0.0.0');
    assert.equal(config.logLevel, 'warn');
    assert.equal(config.port, 9002);
    assert.deepEqual([config.sources.host, config.sources.logLevel, config.sources.port], ['file', 'env', 'flag']);
  });

  it('reads candor.config.json from the data directory when present', () => {
    const dir = tempDir('candor-config-');
    writeFileSync(join(dir, 'candor.config.json'), JSON.stringify({ bodyLimit: 4096 }));
    assert.equal(loadConfig({ environment: { CANDOR_DATA_DIR: dir } }).bodyLimit, 4096);
  });

  it('reports every problem at once', () => {
    const dir = tempDir('candor-config-');
    const file = join(dir, 'c.json');
    writeFileSync(file, JSON.stringify({ colour: 'blue' }));
    assert.throws(
      () => loadConfig({ configFile: file, environment: { CANDOR_PORT: 'eighty', CANDOR_LOG_LEVEL: 'loud', CANDOR_BODY_LIMIT: '10' } }),
      (error) => {
        assert.ok(isCandorError(error, 'CONFIG_INVALID'));
        const problems = (error.details?.problems as { key: string }[]).map((p) => p.key).sort();
        assert.deepEqual(problems, ['bodyLimit', 'colour', 'logLevel', 'port']);
        return true;
      },
    );
  });

  it('names an unreadable configuration file', () => {
    const dir = tempDir('candor-config-');
    const file = join(dir, 'c.json');
    writeFileSync(file, '{ not json');
    assert.throws(() => loadConfig({ configFile: file, environment: {} }), (e) => isCandorError(e, 'CONFIG_FILE_UNREADABLE'));
  });

  it('refuses production without an explicitly configured key file', () => {
    assert.throws(() => loadConfig({ environment: { NODE_ENV: 'production' } }), (e) => isCandorError(e, 'CONFIG_MASTER_KEY_REQUIRED'));
    const config = loadConfig({ environment: { NODE_ENV: 'production', CANDOR_KEY_FILE: '/etc/candor/master.key' } });
    assert.equal(config.keyFile, '/etc/candor/master.key');
  });

  it('accepts an e-mail address or https URL as the controller contact, empty by default, and refuses anything else', () => {
    assert.equal(loadConfig({ environment: {} }).controllerContact, '');
    assert.equal(loadConfig({ environment: { CANDOR_CONTROLLER_CONTACT: 'privacy@shoes.example' } }).controllerContact, 'privacy@shoes.example');
    assert.equal(loadConfig({ environment: { CANDOR_CONTROLLER_CONTACT: 'https://shoes.example/privacy' } }).controllerContact, 'https://shoes.example/privacy');
    for (const bad of ['privacy', 'http://shoes.example/privacy', 'javascript:alert(1)', 'a b@shoes.example']) {
      assert.throws(
        () => loadConfig({ environment: { CANDOR_CONTROLLER_CONTACT: bad } }),
        (e) => isCandorError(e, 'CONFIG_INVALID') && (e.details?.problems as { key: string }[]).some((p) => p.key === 'controllerContact'),
      );
    }
  });

  it('accepts an https URL as the privacy policy address, empty by default, and refuses anything else', () => {
    assert.equal(loadConfig({ environment: {} }).privacyPolicyUrl, '');
    assert.equal(loadConfig({ environment: { CANDOR_PRIVACY_POLICY_URL: 'https://shoes.example/privacy' } }).privacyPolicyUrl, 'https://shoes.example/privacy');
    for (const bad of ['not a url', 'http://shoes.example/privacy', 'javascript:alert(1)', 'privacy@shoes.example', 'https://shoes.example/a b']) {
      assert.throws(
        () => loadConfig({ environment: { CANDOR_PRIVACY_POLICY_URL: bad } }),
        (e) => isCandorError(e, 'CONFIG_INVALID') && (e.details?.problems as { key: string; problem: string }[]).some((p) => p.key === 'privacyPolicyUrl' && p.problem === 'must be empty or an https:// URL'),
        bad,
      );
    }
  });

  it('masks sensitive values when shown', () => {
    const lines = describeConfig(loadConfig({ environment: { CANDOR_DATABASE_URL: 'postgres://app:hunter2@db/candor' } }));
    const url = lines.find((l) => l.key === 'databaseUrl');
    assert.equal(url?.value, '********');
    assert.ok(!JSON.stringify(lines).includes('hunter2'));
    assert.equal(lines.find((l) => l.key === 'port')?.value, '8080');
  });

  it('shows every value in a form it accepts back (no trusted proxy: empty)', () => {
    const lines = describeConfig(loadConfig({ environment: {} }));
    const environment = Object.fromEntries(lines.filter((l) => !l.sensitive && l.source === 'default').map((l) => [l.env, l.value]));
    assert.equal(environment.CANDOR_TRUST_PROXY, '');
    assert.deepEqual(describeConfig(loadConfig({ environment })).map((l) => l.value), lines.map((l) => l.value));
    assert.equal(describeConfig(loadConfig({ environment: { CANDOR_TRUST_PROXY: 'loopback' } })).find((l) => l.key === 'trustProxy')?.value, 'loopback');
  });
});
