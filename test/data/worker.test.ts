// The DataLoader's worker-thread path, which only exists in compiled JS: compiles lib/data with the project's tsc
// into a temp dir (made a package root that loads this checkout's addon), runs test/data/worker-check.mjs on it (real worker threads), and checks that its batches are
// bit-identical to the in-process path run here from the TypeScript sources.
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataLoader, InMemoryDataset } from '../../lib/data/index.js';
import { Generator } from '../../lib/random.js';
// @ts-expect-error plain .mjs helper without type declarations
import { SYNTHETIC_OPTIONS, digestEpochs, syntheticDataset } from './worker-check.mjs';

const repo = resolve(import.meta.dirname, '../..');
let dist = '';

interface CheckOutput {
  ok: boolean;
  failures: string[];
  results: Record<string, { ok: boolean; inProcess?: { digest: string }; workers1?: { digest: string } }>;
}

describe('compiled DataLoader with worker threads', () => {
  beforeAll(() => {
    dist = mkdtempSync(join(tmpdir(), 'mae-data-dist-'));
    const tsc = join(repo, 'node_modules/typescript/bin/tsc');
    const flags = ['--outDir', dist, '--rootDir', repo, '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022', '--strict', '--skipLibCheck', '--types', 'node'];
    try {
      execFileSync(process.execPath, [tsc, join(repo, 'lib/data/index.ts'), join(repo, 'lib/data/worker.ts'), ...flags], { encoding: 'utf8', stdio: 'pipe' });
    } catch (e) {
      // tsc still emits on type errors; only errors in lib/data (or missing output) concern this test
      const output = String((e as { stdout?: string }).stdout ?? e);
      if (output.includes('lib/data/') || !existsSync(join(dist, 'lib/data/worker.js'))) throw new Error(`tsc failed on lib/data:\n${output}`);
    }
    // a package root: the compiled folder.js finds sharp, lib/native.js the addon
    symlinkSync(join(repo, 'node_modules'), join(dist, 'node_modules'), 'dir');
    symlinkSync(join(repo, 'build'), join(dist, 'build'), 'dir');
    copyFileSync(join(repo, 'package.json'), join(dist, 'package.json'));
  });
  afterAll(() => {
    if (dist !== '') rmSync(dist, { recursive: true, force: true });
  });

  it('produces the same batches as the in-process path, surfaces bad files and resumes with startAt', async () => {
    let stdout: string;
    try {
      stdout = execFileSync(process.execPath, [join(repo, 'test/data/worker-check.mjs'), dist], { encoding: 'utf8', timeout: 60000 });
    } catch (e) {
      // exit 1 is a failed check: its JSON line on stdout names it
      const x = e as { status?: number; signal?: string; stdout?: string; stderr?: string };
      throw new Error(`worker-check.mjs exited with ${x.status ?? x.signal}\nstdout: ${(x.stdout ?? '').slice(-4000)}\nstderr: ${(x.stderr ?? '').slice(-4000)}`);
    }
    const out = JSON.parse(stdout.trim().split('\n').pop()!) as CheckOutput;
    expect(out.failures).toEqual([]);
    expect(out.ok).toBe(true);
    for (const name of ['identical_train', 'identical_eval', 'startAt', 'folder_skip', 'folder_stop', 'shards_raw', 'shards_jpeg', 'recycle', 'early_break']) {
      expect(out.results[name]?.ok, name).toBe(true);
    }

    // The compiled worker batches equal what the TypeScript sources compute in-process here.
    for (const [name, augment] of [['identical_train', true], ['identical_eval', false]] as const) {
      const loader = new DataLoader(syntheticDataset(InMemoryDataset, Generator), { ...SYNTHETIC_OPTIONS, augment, workers: 0 });
      const here = (await digestEpochs(loader, [0, 1, 5])) as { digest: string };
      await loader.close();
      expect(here.digest).toBe(out.results[name]!.workers1!.digest);
    }
  });

  it('starts its workers from a program whose Node flags a worker refuses (node --input-type=module -e)', () => {
    const script = [
      `import { DataLoader, InMemoryDataset } from ${JSON.stringify(join(dist, 'lib/data/index.js'))};`,
      'const ds = new InMemoryDataset({ images: new Uint8Array(64 * 28 * 28), labels: new Int32Array(64), channels: 1, height: 28, width: 28, numClasses: 10 });',
      'const l = new DataLoader(ds, { batchSize: 8, imageSize: 28, inChans: 1, workers: 1, seed: 0, augment: true, dropLast: true });',
      'let n = 0;',
      'for await (const b of l.epoch(0)) n += b.size;',
      'await l.close();',
      'console.log(l.mode, n);',
    ].join('\n');
    const stdout = execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60000 });
    expect(stdout.trim()).toBe('workers 64');
  });
});
