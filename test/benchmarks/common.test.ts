// The benchmarks' command line (benchmarks/common.ts benchArgs): --help prints the usage without running anything,
// and an unknown option or a missing value stops the benchmark before it starts, naming the option.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const script = (name: string) => fileURLToPath(new URL(`../../dist/benchmarks/${name}.js`, import.meta.url));
const run = (name: string, ...args: string[]) => spawnSync(process.execPath, [script(name), ...args], { encoding: 'utf8', timeout: 30_000 });

describe('benchmark command lines', () => {
  it('--help prints the usage and exits 0 without measuring', () => {
    for (const name of ['kernels', 'matmul', 'train']) {
      const p = run(name, '--help');
      expect(p.status, `${name} --help: ${p.stderr}`).toBe(0);
      expect(p.stdout).toMatch(/--threads N/);
      expect(p.stdout).not.toMatch(/GFLOP\/s|wrote /);
    }
  });

  it('refuses an unknown option and an option without its value, naming it', () => {
    const bogus = run('train', '--no-torhc');
    expect(bogus.status).toBe(2);
    expect(bogus.stderr).toMatch(/unknown option '--no-torhc' \(options: .*--no-torch/);
    const missing = run('kernels', '--reps');
    expect(missing.status).toBe(2);
    expect(missing.stderr).toMatch(/--reps needs a value/);
    expect(bogus.stdout + missing.stdout).toBe('');
  });
});
