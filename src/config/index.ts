/**
 * Configuration: one schema with defaults, descriptions and a sensitive flag, read from defaults,
 * an optional JSON file, the environment and command-line flags, validated once at start.
 */
export { loadConfig, describeConfig, type Config, type ConfigInput, type ConfigLine, type ConfigSource } from './config.ts';
export { CONFIG_SCHEMA, type ConfigKey } from './config.schema.ts';
export { applyIdentityRules, type IdentityRulesSetting, type IdentityRulesShape } from './identity-rules.ts';
