// Lint rules that guard the architecture: deterministic workflows, and imports that point down the layers
//   cli / workers → workflows → activities → drivers → transports,   with spec and common usable by all.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import { builtinModules } from 'node:module';
import importX from 'eslint-plugin-import-x';
import { createTypeScriptImportResolver } from 'eslint-import-resolver-typescript';

const nodeBuiltins = [...builtinModules, ...builtinModules.map((m) => `node:${m}`)];

const layer = (files, forbidden, message) => ({
  files,
  rules: {
    '@typescript-eslint/no-restricted-imports': ['error', { patterns: forbidden.map((group) => ({ group: [group], message, allowTypeImports: false })) }],
  },
});

export default tseslint.config(
  { ignores: ['lib/**', 'node_modules/**', '.tools/**', '.lab/**', '.data/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': [
        'error',
        { allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['test', 'describe', 'it', 'suite'] }] },
      ],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    // No import circles, type-only imports included: a circle hides which layer owns a name.
    files: ['src/**/*.ts'],
    plugins: { 'import-x': importX },
    settings: {
      'import-x/resolver-next': [createTypeScriptImportResolver()],
      'import-x/extensions': ['.ts'],
      'import-x/parsers': { '@typescript-eslint/parser': ['.ts'] },
    },
    rules: { 'import-x/no-cycle': ['error', { ignoreExternal: true }] },
  },
  {
    // Workflows replay deterministically in a sandbox: no Node builtins, no I/O libraries, activities by type only.
    // The step registry (src/steps) is imported by workflows, so the same holds there.
    files: ['src/workflows/**/*.ts', 'src/steps/**/*.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          paths: [
            ...nodeBuiltins.map((name) => ({ name, message: 'Workflows must be deterministic: no Node builtins.' })),
            { name: 'ssh2', message: 'Workflows do no I/O: SSH belongs in activities.' },
            { name: '@temporalio/activity', message: 'Not available in workflows.' },
            { name: '@temporalio/client', message: 'Not available in workflows.' },
            { name: '@temporalio/worker', message: 'Not available in workflows.' },
          ],
          patterns: [
            { group: ['../activities', '../activities/*'], allowTypeImports: true, message: 'Import activities with `import type` only.' },
            { group: ['../spec', '../spec/*'], allowTypeImports: true, message: 'Workflows take validated specs; import spec types only.' },
            { group: ['../drivers/*', '../transports/*', '../workers/*', '../cli/*'], message: 'Workflows orchestrate; they do not reach hosts.' },
          ],
        },
      ],
    },
  },
  layer(['src/activities/**/*.ts'], ['../workflows/*', '../workers/*', '../cli/*'], 'Activities sit below workflows, workers and the CLI.'),
  layer(
    ['src/drivers/**/*.ts'],
    ['**/activities/*', '**/workflows/*', '**/workers/*', '**/cli/*'],
    'Drivers build commands and parse answers; they sit below activities.',
  ),
  layer(['src/transports/**/*.ts'], ['../drivers/*', '../activities/*', '../workflows/*', '../workers/*', '../cli/*'], 'Transports are the bottom layer.'),
  layer(
    ['src/spec/**/*.ts'],
    ['../drivers/*', '../activities/*', '../workflows/*', '../workers/*', '../cli/*', '../transports/*'],
    'The spec depends on nothing but common/.',
  ),
  layer(
    ['src/common/**/*.ts'],
    ['../drivers/*', '../activities/*', '../workflows/*', '../workers/*', '../cli/*', '../transports/*'],
    'common/ is shared vocabulary: it imports no layer.',
  ),
  {
    files: ['test/**/*.ts'],
    rules: { '@typescript-eslint/no-non-null-assertion': 'off' },
  },
);
