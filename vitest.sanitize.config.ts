// The sanitizer run (npm run test:sanitize, tools/test-sanitize.sh): the op, tensor, autograd, bad-input and
// argument-check tests against the ASan + UBSan build of the addon. Each test file runs in its own child process;
// the setup file makes it exit normally when tinypool ends it, so that LeakSanitizer's exit check runs there.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/ops/**/*.test.ts', 'test/tensor.test.ts', 'test/autograd.test.ts', 'test/check.test.ts'],
    pool: 'forks',
    setupFiles: ['test/helpers/sanitize-setup.ts'],
    testTimeout: 300000,
    hookTimeout: 300000,
  },
});
