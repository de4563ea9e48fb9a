import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { tempDir } from '../../test/support/temp-dir.ts';
import { isCandorError } from '../shared/errors.ts';
import { applyIdentityRules, describeConfig, loadConfig, type IdentityRulesShape } from './index.ts';

const DEFAULTS: IdentityRulesShape = {
  blockedValues: { '*': ['null', 'test'], email: ['test@test.com'] },
  blockedPatterns: { email: ['@example\\.com$'] },
  limits: { user_id: 1, email: 5, phone: 5 },
  priority: ['user_id', 'email', 'phone', 'custom:*', 'anonymous_id'],
};

/** The identityRules problems of a configuration that must not load: [path, code] pairs. */
function problemsOf(rules: unknown): [string, string][] {
  try {
    loadConfig({ environment: { CANDOR_IDENTITY_RULES: JSON.stringify(rules) } });
  } catch (error) {
    assert.ok(isCandorError(error, 'CONFIG_INVALID'));
    const problems = error.details?.problems as { key: string; path?: string; code?: string }[];
    return problems.filter((p) => p.key === 'identityRules').map((p) => [p.path ?? '', p.code ?? '']);
  }
  assert.fail('the configuration loaded');
}

describe('identityRules setting', () => {
  it('changes nothing by default, and shows as {}', () => {
    const config = loadConfig({ environment: {} });
    assert.deepEqual(config.identityRules, {});
    assert.equal(config.sources.identityRules, 'default');
    assert.deepEqual(applyIdentityRules(DEFAULTS, config.identityRules), DEFAULTS);
    assert.equal(describeConfig(config).find((l) => l.key === 'identityRules')?.value, '{}');
  });

  it('reads an object from the configuration file', () => {
    const dir = tempDir('candor-config-');
    const file = join(dir, 'c.json');
    writeFileSync(file, JSON.stringify({ identityRules: { limits: { email: 1 }, blockedValues: { email: ['info@shop.io'] } } }));
    const config = loadConfig({ configFile: file, environment: {} });
    assert.deepEqual(config.identityRules, { limits: { email: 1 }, blockedValues: { email: ['info@shop.io'] } });
    assert.equal(config.sources.identityRules, 'file');
    assert.equal(describeConfig(config).find((l) => l.key === 'identityRules')?.value, JSON.stringify(config.identityRules));
  });

  it('reads JSON text or the path of a JSON file from CANDOR_IDENTITY_RULES, replacing the file value whole', () => {
    const dir = tempDir('candor-config-');
    const file = join(dir, 'c.json');
    writeFileSync(file, JSON.stringify({ identityRules: { limits: { email: 1 } } }));
    const rulesFile = join(dir, 'rules.json');
    writeFileSync(rulesFile, JSON.stringify({ priority: ['email', 'user_id'] }));
    const fromText = loadConfig({ configFile: file, environment: { CANDOR_IDENTITY_RULES: ' {"limits": {"phone": 2}} ' } });
    assert.deepEqual(fromText.identityRules, { limits: { phone: 2 } });
    assert.equal(fromText.sources.identityRules, 'env');
    assert.deepEqual(loadConfig({ environment: { CANDOR_IDENTITY_RULES: rulesFile } }).identityRules, { priority: ['email', 'user_id'] });
  });

  it('adds blocked values and patterns to the built-in ones, replaces limits per type and the priority order', () => {
    const rules = applyIdentityRules(DEFAULTS, {
      blockedValues: { email: ['info@shop.io', 'test@test.com'], 'custom:crm': [' none '] },
      blockedPatterns: { phone: ['^\\+1555'] },
      limits: { email: 1, 'custom:*': 3 },
      priority: ['custom:crm', 'user_id', 'email'],
    });
    assert.deepEqual(rules, {
      blockedValues: { '*': ['null', 'test'], email: ['test@test.com', 'info@shop.io'], 'custom:crm': ['none'] },
      blockedPatterns: { email: ['@example\\.com$'], phone: ['^\\+1555'] },
      limits: { user_id: 1, email: 1, phone: 5, 'custom:*': 3 },
      priority: ['custom:crm', 'user_id', 'email'],
    });
  });

  it('drops the built-in blocked values and patterns only when replaceDefaultBlocked is true', () => {
    const rules = applyIdentityRules(DEFAULTS, { replaceDefaultBlocked: true, blockedValues: { '*': ['nobody'] } });
    assert.deepEqual(rules.blockedValues, { '*': ['nobody'] });
    assert.deepEqual(rules.blockedPatterns, {});
    assert.deepEqual(rules.limits, DEFAULTS.limits);
  });

  it('accepts every kind of key it documents', () => {
    const config = loadConfig({
      environment: {
        CANDOR_IDENTITY_RULES: JSON.stringify({
          replaceDefaultBlocked: false,
          blockedValues: { '*': ['x'], 'custom:*': ['y'], 'custom:crm_id': ['z'], anonymous_id: [] },
          blockedPatterns: { email: ['^qa\\+'], 'custom:*': ['^tmp-'] },
          limits: { user_id: 2, anonymous_id: 50, 'custom:*': 1 },
          priority: ['user_id', 'custom:crm_id', 'email', 'phone', 'custom:*', 'anonymous_id'],
        }),
      },
    });
    assert.equal(config.identityRules.limits?.user_id, 2);
  });

  it('refuses a value that is not an object, or JSON that cannot be read', () => {
    assert.deepEqual(problemsOf(['user_id']), [['', 'IDENTITY_RULES_NOT_OBJECT']]);
    const file = join(tempDir('candor-config-'), 'c.json');
    writeFileSync(file, JSON.stringify({ identityRules: 5 }));
    assert.throws(
      () => loadConfig({ configFile: file, environment: {} }),
      (error) => isCandorError(error, 'CONFIG_INVALID') && JSON.stringify(error.details?.problems).includes('"code":"IDENTITY_RULES_NOT_OBJECT"'),
    );
    for (const value of [join(tmpdir(), 'no-such-candor-rules.json'), '{ not json']) {
      assert.throws(
        () => loadConfig({ environment: { CANDOR_IDENTITY_RULES: value } }),
        (error) => isCandorError(error, 'CONFIG_INVALID') && JSON.stringify(error.details?.problems) === JSON.stringify([{ key: 'identityRules', code: 'CONFIG_JSON_UNREADABLE', problem: 'must be a JSON object, JSON text of one, or the path of a JSON file holding one' }]),
      );
    }
  });

  it('refuses unknown keys and identifier types', () => {
    assert.deepEqual(problemsOf({ blockedValue: {}, blockedValues: { device_id: ['x'] }, limits: { '*': 1 } }), [
      ['blockedValue', 'IDENTITY_RULES_KEY_UNKNOWN'],
      ['blockedValues.device_id', 'IDENTITY_RULES_TYPE_UNKNOWN'],
      ['limits.*', 'IDENTITY_RULES_TYPE_UNKNOWN'],
    ]);
  });

  it('refuses blocked values that are not lists of strings, and a flag that is not a boolean', () => {
    assert.deepEqual(problemsOf({ replaceDefaultBlocked: 'yes', blockedValues: { email: 'a@b.co', phone: [5] }, blockedPatterns: [] }), [
      ['replaceDefaultBlocked', 'IDENTITY_RULES_VALUE_INVALID'],
      ['blockedValues.email', 'IDENTITY_RULES_VALUE_INVALID'],
      ['blockedValues.phone[0]', 'IDENTITY_RULES_VALUE_INVALID'],
      ['blockedPatterns', 'IDENTITY_RULES_NOT_OBJECT'],
    ]);
  });

  it('refuses blocked patterns that are not valid regular expressions, naming where without the pattern', () => {
    assert.deepEqual(problemsOf({ blockedPatterns: { email: ['^ok$', '(unclosed', '[z-a]'] } }), [
      ['blockedPatterns.email[1]', 'IDENTITY_RULES_PATTERN_INVALID'],
      ['blockedPatterns.email[2]', 'IDENTITY_RULES_PATTERN_INVALID'],
    ]);
  });

  it('refuses limits that are not whole numbers of at least 1, so user_id always keeps a limit', () => {
    assert.deepEqual(problemsOf({ limits: { user_id: 0, email: 1.5, phone: '3', 'custom:*': -1 } }), [
      ['limits.user_id', 'IDENTITY_RULES_LIMIT_INVALID'],
      ['limits.email', 'IDENTITY_RULES_LIMIT_INVALID'],
      ['limits.phone', 'IDENTITY_RULES_LIMIT_INVALID'],
      ['limits.custom:*', 'IDENTITY_RULES_LIMIT_INVALID'],
    ]);
    assert.deepEqual(problemsOf({ limits: { user_id: null } }), [['limits.user_id', 'IDENTITY_RULES_LIMIT_INVALID']]);
  });

  it('refuses a priority that is empty, not a list, or lists unknown or repeated types', () => {
    assert.deepEqual(problemsOf({ priority: [] }), [['priority', 'IDENTITY_RULES_PRIORITY_INVALID']]);
    assert.deepEqual(problemsOf({ priority: 'user_id' }), [['priority', 'IDENTITY_RULES_PRIORITY_INVALID']]);
    assert.deepEqual(problemsOf({ priority: ['user_id', 'device', 'email', 'user_id', 7] }), [
      ['priority[1]', 'IDENTITY_RULES_TYPE_UNKNOWN'],
      ['priority[3]', 'IDENTITY_RULES_PRIORITY_INVALID'],
      ['priority[4]', 'IDENTITY_RULES_TYPE_UNKNOWN'],
    ]);
  });

  it('reads a default phone region and keeps it when the rules are applied over the defaults', () => {
    const config = loadConfig({ environment: { CANDOR_IDENTITY_RULES: JSON.stringify({ defaultPhoneRegion: 'US' }) } });
    assert.deepEqual(config.identityRules, { defaultPhoneRegion: 'US' });
    assert.equal(applyIdentityRules(DEFAULTS, config.identityRules).defaultPhoneRegion, 'US');
    assert.equal(applyIdentityRules(DEFAULTS, {}).defaultPhoneRegion, undefined, 'no region by default');
  });

  it('refuses a default phone region that is not an upper-case ISO 3166-1 alpha-2 code with a numbering plan', () => {
    for (const region of ['us', 'USA', 'XX', 'ZZ', '', 1, null]) {
      assert.deepEqual(problemsOf({ defaultPhoneRegion: region }), [['defaultPhoneRegion', 'IDENTITY_RULES_REGION_INVALID']], JSON.stringify(region));
    }
  });

  it('reports rule problems together with the other settings’ problems', () => {
    assert.throws(
      () => loadConfig({ environment: { CANDOR_PORT: 'eighty', CANDOR_IDENTITY_RULES: JSON.stringify({ limits: { email: 0 } }) } }),
      (error) => {
        assert.ok(isCandorError(error, 'CONFIG_INVALID'));
        assert.deepEqual((error.details?.problems as { key: string }[]).map((p) => p.key).sort(), ['identityRules', 'port']);
        return true;
      },
    );
  });
});
