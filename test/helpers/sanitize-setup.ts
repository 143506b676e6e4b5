// Setup of the sanitizer run (vitest.sanitize.config.ts): after each test file, LeakSanitizer's check runs in the
// test's own process, while it is alive (tinypool kills a child 1 s after asking it to end, which can cut the check
// at exit short). Its report goes to LSAN's log; tools/test-sanitize.sh keeps the leaks that our code allocated.
import { afterAll } from 'vitest';
import { native } from '../../lib/native.js';

afterAll(() => {
  const check = (native as unknown as { leakCheck?: () => boolean }).leakCheck;
  if (!check) throw new Error('the sanitizer run needs the sanitizer build of the addon (MAE_ADDON=build-sanitize/Release/mae.node)');
  check();
});
