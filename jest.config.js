/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/tests'],
  testMatch: ['**/*.test.ts'],
  transform: {
    '^.+\\.ts$': ['@swc/jest', { jsc: { target: 'es2022' } }],
  },
  testTimeout: 30000,
  // The end-to-end suites each start servers and SQLite files; two workers match the CI machine.
  maxWorkers: 2,
};
