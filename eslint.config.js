// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const nativeOnlyInAdapters = {
  paths: [
    { name: 'pkcs11js', message: 'Only src/keystore/pkcs11/* may import pkcs11js.' },
    { name: 'serialport', message: 'Only src/device/transport/serial.ts may import serialport.' },
    { name: 'node-hid', message: 'Only src/device/transport/hid.ts may import node-hid.' },
    { name: 'better-sqlite3', message: 'Only src/portal/storage-sqlite.ts may import better-sqlite3.' },
    { name: 'pg', message: 'Only src/portal/storage-postgres.ts may import pg.' },
  ],
};

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'firmware-bindings/build/**', 'coverage/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-restricted-imports': ['error', nativeOnlyInAdapters],
    },
  },
  {
    // src/core is pure: given bytes it returns bytes. No I/O, no native modules.
    files: ['src/core/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        paths: [
          ...nativeOnlyInAdapters.paths,
          ...['fs', 'node:fs', 'fs/promises', 'node:fs/promises', 'net', 'node:net', 'http', 'node:http',
            'https', 'node:https', 'child_process', 'node:child_process', 'dgram', 'node:dgram']
            .map((name) => ({ name, message: 'src/core is pure: no file system, network or processes.' })),
        ],
      }],
    },
  },
  { files: ['bin/**/*.js'], languageOptions: { globals: { process: 'readonly' } } },
  { files: ['src/keystore/pkcs11/**/*.ts'], rules: { 'no-restricted-imports': 'off' } },
  // Each device transport may import its own native module and no other.
  {
    files: ['src/device/transport/serial.ts'],
    rules: { 'no-restricted-imports': ['error', { paths: nativeOnlyInAdapters.paths.filter((p) => p.name !== 'serialport') }] },
  },
  {
    files: ['src/device/transport/hid.ts'],
    rules: { 'no-restricted-imports': ['error', { paths: nativeOnlyInAdapters.paths.filter((p) => p.name !== 'node-hid') }] },
  },
  { files: ['src/portal/storage-sqlite.ts', 'src/portal/storage-postgres.ts'], rules: { 'no-restricted-imports': 'off' } },
);
