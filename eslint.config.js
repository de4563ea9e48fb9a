// Lint: typescript-eslint's recommended rules plus the architecture rules of STYLE.md — no import cycles, other
// modules only through their index.ts, and the domain never importing transport (http, cli) or the composition root.
import { readdirSync } from 'node:fs';
import tseslint from 'typescript-eslint';
import { importX } from 'eslint-plugin-import-x';

const modules = readdirSync(new URL('./src/modules', import.meta.url), { withFileTypes: true })
  .filter((entry) => entry.isDirectory())
  .map((entry) => entry.name);

const moduleBoundaries = modules.map((name) => ({
  target: ['./src/!(modules)/**/*', './src/*.ts', `./src/modules/!(${name})/**/*`, './bin/**/*', './bench/**/*', './test/**/*', './scripts/**/*'],
  from: `./src/modules/${name}`,
  except: ['./index.ts'],
  message: `Import the ${name} module through src/modules/${name}/index.ts only.`,
}));

// import-x resolves the `.ts` extensions our imports carry, and parses TypeScript to follow them.
const importSettings = {
  'import-x/resolver': { node: { extensions: ['.ts', '.js'] } },
  'import-x/extensions': ['.ts', '.js'],
  'import-x/parsers': { '@typescript-eslint/parser': ['.ts'] },
};

export default tseslint.config(
  { ignores: ['node_modules/**', '.candor/**', 'coverage/**'] },
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    plugins: { 'import-x': importX },
    settings: importSettings,
    rules: {
      'import-x/no-cycle': ['error', { maxDepth: 20 }],
      'import-x/no-self-import': 'error',
    },
  },
  {
    // Architecture zones apply to product code; tests may wire a kernel to exercise a module.
    files: ['**/*.ts'],
    ignores: ['**/*.test.ts', 'test/**'],
    plugins: { 'import-x': importX },
    settings: importSettings,
    rules: {
      'import-x/no-restricted-paths': [
        'error',
        {
          zones: [
            ...moduleBoundaries,
            {
              target: './src/modules',
              from: ['./src/http', './src/cli', './src/kernel.ts'],
              message: 'The domain knows nothing of transport or wiring.',
            },
            {
              target: ['./src/storage', './src/shared', './src/config'],
              from: ['./src/modules', './src/http', './src/cli', './src/kernel.ts'],
              message: 'Foundations do not depend on modules or transport.',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['**/*.ts'],
    rules: {
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      'no-restricted-syntax': [
        'error',
        { selector: "MemberExpression[object.name='process'][property.name='env']", message: 'Read the environment through src/config only.' },
      ],
    },
  },
  {
    files: ['src/config/config.ts', 'test/**/*.ts', 'bench/**/*.ts', 'scripts/**/*.ts', '**/*.test.ts'],
    rules: { 'no-restricted-syntax': 'off' },
  },
);
