// ESLint for the browser client (web/) and its unit tests (tests/web/): `npx eslint .`,
// run by scripts/test. web/vendor/ is third-party (socket.io's client, qrcode-generator) and not ours to lint.
import js from '@eslint/js';
import globals from 'globals';

export default [
  { ignores: ['web/vendor/', 'node_modules/', '.venv/', 'test-artifacts/', 'data/', 'build/'] },
  js.configs.recommended,
  {
    files: ['web/**/*.js'],
    languageOptions: {
      ecmaVersion: 2022,
      sourceType: 'module',
      // `io` is socket.io's client, loaded by a <script> tag before the page's modules.
      globals: { ...globals.browser, io: 'readonly' },
    },
  },
  {
    files: ['tests/**/*.js'],
    languageOptions: { ecmaVersion: 2022, sourceType: 'script', globals: globals.browser },
  },
  {
    files: ['tests/web/**/*.mjs', 'tests/*.mjs', 'eslint.config.js'],
    languageOptions: { ecmaVersion: 2022, sourceType: 'module', globals: globals.node },
  },
  {
    rules: {
      'no-unused-vars': ['error', { args: 'after-used', caughtErrors: 'none' }],
      eqeqeq: ['error', 'always', { null: 'ignore' }],
      'no-var': 'error',
      'prefer-const': 'error',
    },
  },
];
