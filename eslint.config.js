// Type-aware lint of src/ and test/ (typescript-eslint with type information), run by `npm test`
// (`npm run lint`). Rules chosen for the defects they find, not for style: a promise nobody awaits
// or catches, a promise where a boolean or a void callback is expected, `await` on a non-promise,
// unused code, an object or Buffer turned into a string by accident, a `throw` or rejection of a
// non-Error, a switch that misses a case. Findings are fixed in the code; a rule loosened says why
// here. Not enabled (yet): no-unnecessary-condition and the no-unsafe-* family, which would first
// need the `any` from JSON bodies and driver rows typed at their source.
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'dist-web/**', 'node_modules/**', 'web/**', 'bench/**', 'scripts/**', 'deploy/**', 'bin/**', 'eslint.config.js', 'vitest.config.ts'] },
  {
    files: ['src/**/*.ts', 'test/**/*.ts'],
    extends: [tseslint.configs.base],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/await-thenable': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none', ignoreRestSiblings: true }],
      '@typescript-eslint/only-throw-error': 'error',
      '@typescript-eslint/prefer-promise-reject-errors': 'error',
      '@typescript-eslint/no-for-in-array': 'error',
      '@typescript-eslint/no-implied-eval': 'error',
      // Row values from the database driver are `unknown` and mapped with String(): checked where the type is known.
      '@typescript-eslint/no-base-to-string': ['error', { checkUnknown: false }],
      '@typescript-eslint/restrict-plus-operands': 'error',
      '@typescript-eslint/no-duplicate-type-constituents': 'error',
      '@typescript-eslint/no-redundant-type-constituents': 'error',
      '@typescript-eslint/switch-exhaustiveness-check': ['error', { considerDefaultExhaustiveForUnions: true }],
      '@typescript-eslint/return-await': ['error', 'in-try-catch'],
      'no-fallthrough': 'error',
      'no-self-compare': 'error',
      'no-unreachable': 'error',
      'no-constant-condition': ['error', { checkLoops: false }],
      'no-dupe-keys': 'error',
      'no-duplicate-case': 'error',
      'no-cond-assign': 'error',
      'no-unsafe-finally': 'error',
      'use-isnan': 'error',
      'valid-typeof': 'error',
      'no-async-promise-executor': 'error',
      'no-empty': ['error', { allowEmptyCatch: false }],
      'no-control-regex': 'error',
    },
  },
);
