// npm run test:sanitize: the op, tensor, autograd, bad-input and argument-check tests (vitest.sanitize.config.ts)
// against the addon built with AddressSanitizer + UndefinedBehaviorSanitizer (CMake option MAE_SANITIZE, in
// build-sanitize/, no CUDA). node itself is not instrumented, so libasan is preloaded. A memory error or undefined
// behaviour stops the test process (a failed test file); LeakSanitizer runs after each test file
// (test/helpers/sanitize-setup.ts) and this script fails on every leak whose allocation was made by our code (the
// first frame below the allocator that is not the C++ library is in bindings/ or native/). Node's and V8's own
// allocations (held from the JavaScript heap, which LeakSanitizer does not scan) are not ours and are left out.
// Exit code 0 only when the tests pass and nothing was found.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const root = resolve(new URL('..', import.meta.url).pathname);
const run = (cmd, args, opts = {}) => {
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', ...opts });
  if (r.error) throw r.error;
  return r.status ?? 1;
};

console.log('test:sanitize: building the addon with ASan + UBSan in build-sanitize/ ...');
const cmakeJs = join(root, 'node_modules', '.bin', 'cmake-js');
if (run(cmakeJs, ['compile', '-O', 'build-sanitize', '--CDMAE_SANITIZE=ON', '--CDMAE_CUDA=OFF'], { stdio: ['ignore', 'ignore', 'inherit'] }) !== 0) {
  console.error('test:sanitize: the sanitizer build failed');
  process.exit(1);
}
const libasan = execFileSync('g++', ['-print-file-name=libasan.so'], { encoding: 'utf8' }).trim();
const logs = mkdtempSync(join(tmpdir(), 'mae-sanitize-'));
const env = {
  ...process.env,
  MAE_ADDON: join(root, 'build-sanitize', 'Release', 'mae.node'),
  LD_PRELOAD: libasan,
  ASAN_OPTIONS: `log_path=${logs}/asan:detect_leaks=1:abort_on_error=0`,
  // exitcode=0: leaks are judged below, by who allocated them. use_tls=0: LeakSanitizer's own thread stopper crashes
  // ("Tracer caught signal 11") scanning the thread-local storage that oneDNN (libdnnl.so.2, opened with dlopen by
  // the bf16 products) gives the OpenMP threads that ran its kernels; our code keeps no allocation only in TLS
  LSAN_OPTIONS: 'exitcode=0:use_tls=0',
  UBSAN_OPTIONS: `print_stacktrace=1:log_path=${logs}/ubsan`,
};
console.log(`test:sanitize: running the tests (reports in ${logs}) ...`);
const status = run(process.execPath, [join(root, 'node_modules', 'vitest', 'vitest.mjs'), 'run', '--config', 'vitest.sanitize.config.ts'], { env });

// each report: blocks separated by blank lines; a leak block starts "Direct leak of" / "Indirect leak of"
const ours = (frame) => /\/(bindings|native)\/[^ ]+:\d+/.test(frame) || /mae\.node\+0x/.test(frame);
const library = (frame) => /\/usr\/include\/c\+\+\/|libstdc\+\+|\/libsanitizer\//.test(frame);
const errors = [];
let leaks = 0;
let reports = 0;
for (const f of readdirSync(logs)) {
  const text = readFileSync(join(logs, f), 'utf8');
  reports++;
  for (const m of text.matchAll(/^.*(ERROR: AddressSanitizer|runtime error:).*$/gm)) errors.push(`${f}: ${m[0].trim()}`);
  for (const block of text.split(/\n\s*\n/)) {
    if (!/^(Direct|Indirect) leak of/m.test(block)) continue;
    const frames = block.split('\n').filter((l) => /^\s+#\d+ /.test(l)).slice(1);  // #0 is the allocator
    const first = frames.find((l) => !library(l));
    if (first && ours(first)) {
      leaks++;
      errors.push(`${f}: ${block.trim().split('\n').slice(0, 8).join('\n')}`);
    }
  }
}
for (const e of errors) console.error(e + '\n');
console.log(`test:sanitize: vitest ${status === 0 ? 'passed' : `failed (exit ${status})`}; ${reports} sanitizer report(s) read, ` +
  `${errors.length - leaks} memory or UB error(s), ${leaks} leak(s) allocated by our code`);
process.exit(status === 0 && errors.length === 0 ? 0 : 1);
