// Checks the COMPILED DataLoader (tsc output) with real worker threads, which vitest cannot run from TS sources:
//   - worker and in-process batches are bit-identical (1 and 2 workers, augmentation on and off, several epochs)
//   - startAt resumes identically in worker mode
//   - an image folder with a corrupt file: 'skip' warns once (across workers) and completes, 'stop' rejects naming it
//   - breaking out of an epoch early and closing does not hang
//
// By hand:   npx tsc -p tsconfig.json --outDir /tmp/data-dist && node test/data/worker-check.mjs /tmp/data-dist
// (test/data/worker.test.ts compiles lib/data to a temp dir and runs this script on it.)
//   - prepared shards (raw and JPEG) read in workers give the in-process batches
//   - released batches' buffers are reused by the workers without changing any batch
// Prints one JSON line with the results and digests; exits 1 if a check fails.
//
// If <dist> lies outside the repository it is made to look like the package root: links to ./node_modules (sharp
// must resolve from the compiled files) and ./build (the addon), and a copy of package.json.
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/** A deterministic in-memory dataset: 203 images of 1 x 12 x 12 random bytes, labels i % 10. */
export function syntheticDataset(InMemoryDataset, Generator) {
  const gen = new Generator(7);
  const n = 203;
  const images = new Uint8Array(n * 144);
  for (let i = 0; i < images.length; i++) images[i] = gen.int(256);
  const labels = Array.from({ length: n }, (_, i) => i % 10);
  return new InMemoryDataset({ images, labels, channels: 1, height: 12, width: 12, numClasses: 10 });
}

export const SYNTHETIC_OPTIONS = { batchSize: 16, seed: 3, imageSize: 10, inChans: 3 };

/** sha256 over every batch (images, labels, indices, step) of the given epochs. */
export async function digestEpochs(loader, epochs, startAt = 0) {
  const hash = createHash('sha256');
  let batches = 0;
  for (const epoch of epochs) {
    for await (const b of loader.epoch(epoch, { startAt })) {
      hash.update(Buffer.from(b.images.buffer, b.images.byteOffset, b.images.byteLength));
      hash.update(Buffer.from(b.labels.buffer, b.labels.byteOffset, b.labels.byteLength));
      hash.update(Buffer.from(b.indices.buffer, b.indices.byteOffset, b.indices.byteLength));
      hash.update(String(b.step));
      batches++;
    }
  }
  return { digest: hash.digest('hex'), batches };
}

async function main() {
  const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
  const dist = resolve(process.argv[2] ?? join(repo, 'dist'));
  const entry = join(dist, 'lib/data/index.js');
  if (!existsSync(entry)) throw new Error(`${entry} not found: compile first (npx tsc -p tsconfig.json --outDir ${dist})`);
  if (!dist.startsWith(repo + '/')) {
    for (const name of ['node_modules', 'build']) if (!existsSync(join(dist, name))) symlinkSync(join(repo, name), join(dist, name), 'dir');
    if (!existsSync(join(dist, 'package.json'))) copyFileSync(join(repo, 'package.json'), join(dist, 'package.json'));
  }
  const data = await import(pathToFileURL(entry).href);
  const { Generator } = await import(pathToFileURL(join(dist, 'lib/random.js')).href);
  const { DataLoader, InMemoryDataset, ImageFolderDataset, ShardDataset, prepareShards } = data;
  const results = {};
  const failures = [];
  const check = (name, ok, detail) => {
    results[name] = { ok, ...detail };
    if (!ok) failures.push(`${name}: ${JSON.stringify(detail)}`);
  };

  // 1. worker vs in-process, bit for bit
  const ds = syntheticDataset(InMemoryDataset, Generator);
  for (const augment of [true, false]) {
    const runs = {};
    for (const [name, extra] of [['inProcess', { workers: 0 }], ['workers1', { workers: 1 }], ['workers2', { workers: 2, prefetch: 3 }]]) {
      const loader = new DataLoader(ds, { ...SYNTHETIC_OPTIONS, augment, ...extra });
      runs[name] = { mode: loader.mode, ...(await digestEpochs(loader, [0, 1, 5])) };
      await loader.close();
    }
    const same = runs.workers1.digest === runs.inProcess.digest && runs.workers2.digest === runs.inProcess.digest;
    const modes = runs.inProcess.mode === 'in-process' && runs.workers1.mode === 'workers' && runs.workers2.mode === 'workers';
    check(`identical_${augment ? 'train' : 'eval'}`, same && modes, runs);
  }

  // 2. startAt in worker mode equals the tail of a full epoch
  {
    const full = new DataLoader(ds, { ...SYNTHETIC_OPTIONS, augment: true, workers: 2 });
    const tail = [];
    for await (const b of full.epoch(4)) if (b.step >= 6) tail.push(b);
    await full.close();
    const resumed = new DataLoader(ds, { ...SYNTHETIC_OPTIONS, augment: true, workers: 1 });
    let same = true;
    let k = 0;
    for await (const b of resumed.epoch(4, { startAt: 6 })) {
      const t = tail[k++];
      same &&= t !== undefined && t.step === b.step && Buffer.compare(Buffer.from(t.images.buffer), Buffer.from(b.images.buffer)) === 0;
    }
    await resumed.close();
    check('startAt', same && k === tail.length, { batches: k, expected: tail.length });
  }

  // 3. image folder with a corrupt file, decoded in workers
  const sharp = (await import('sharp')).default;
  const root = mkdtempSync(join(tmpdir(), 'mae-folder-'));
  try {
    for (const [cls, k] of [['cat', 0], ['cat', 1], ['dog', 0], ['dog', 1]]) {
      mkdirSync(join(root, cls), { recursive: true });
      const pixels = Buffer.alloc(20 * 16 * 3, 40 + 50 * k + (cls === 'dog' ? 100 : 0));
      await sharp(pixels, { raw: { width: 20, height: 16, channels: 3 } }).png().toFile(join(root, cls, `${k}.png`));
    }
    const badPath = join(root, 'dog', '2.png');
    writeFileSync(badPath, 'this is not a png');
    const warnings = [];
    const skipDs = await ImageFolderDataset.open(root, { onBadFile: 'skip', onWarning: (m) => warnings.push(m) });
    const skipLoader = new DataLoader(skipDs, { batchSize: 2, imageSize: 8, augment: true, workers: 2, prefetch: 3 });
    let samples = 0;
    for (const epoch of [0, 1]) for await (const b of skipLoader.epoch(epoch)) samples += b.size;
    await skipLoader.close();
    const badWarnings = warnings.filter((w) => w.includes(badPath));
    check('folder_skip', samples === 10 && badWarnings.length === 1 && skipLoader.mode === 'workers', { samples, warnings });

    const stopDs = await ImageFolderDataset.open(root, { onBadFile: 'stop' });
    const stopLoader = new DataLoader(stopDs, { batchSize: 5, imageSize: 8, workers: 1 });
    let message = null;
    try {
      for await (const b of stopLoader.epoch(0)) void b;
    } catch (e) {
      message = e.message;
    }
    await stopLoader.close();
    check('folder_stop', message !== null && message.includes(badPath), { message });

    // the folder prepared as raw and JPEG shards: worker batches = in-process batches
    for (const format of ['raw', 'jpeg']) {
      const out = join(`${root}-shards`, format);
      await prepareShards({ data: root, out, format, shortSide: 12, shardBytes: 600 });
      const shards = await ShardDataset.open(out);
      const runs = {};
      for (const [name, extra] of [['inProcess', { workers: 0 }], ['workers2', { workers: 2, prefetch: 3 }]]) {
        const loader = new DataLoader(shards, { batchSize: 3, imageSize: 8, augment: true, seed: 5, ...extra });
        runs[name] = { mode: loader.mode, ...(await digestEpochs(loader, [0, 3])) };
        await loader.close();
      }
      check(`shards_${format}`, shards.length === 4 && runs.workers2.mode === 'workers' && runs.workers2.digest === runs.inProcess.digest, runs);
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
    rmSync(`${root}-shards`, { recursive: true, force: true });
  }

  // 4. batch.release(): buffers recycled through the workers (the epoch's last, smaller batch too), same batches.
  // prefetch 1: the request for batch k + 1 is posted after batch k - 1 was released, so its worker holds that buffer
  // by then; with more batches ahead, a busy machine can have every recycled buffer taken by the requests queued
  // before it, and the last batch then gets fresh memory (right, but not what this checks)
  {
    const loader = new DataLoader(ds, { ...SYNTHETIC_OPTIONS, augment: true, workers: 2, prefetch: 1 });
    const hash = createHash('sha256');
    let emptied = true;
    let reused = 0; // smaller last batches written into a recycled full-size buffer

    for (const epoch of [0, 1, 5]) {
      for await (const b of loader.epoch(epoch)) {
        hash.update(Buffer.from(b.images.buffer, b.images.byteOffset, b.images.byteLength));
        hash.update(Buffer.from(b.labels.buffer, b.labels.byteOffset, b.labels.byteLength));
        hash.update(Buffer.from(b.indices.buffer, b.indices.byteOffset, b.indices.byteLength));
        hash.update(String(b.step));
        if (b.images.buffer.byteLength > b.images.byteLength) reused++;
        b.release();
        b.release(); // a second call is a no-op
        emptied &&= b.images.length === 0;
      }
    }
    await loader.close();
    const reference = new DataLoader(ds, { ...SYNTHETIC_OPTIONS, augment: true, workers: 0 });
    const expected = await digestEpochs(reference, [0, 1, 5]);
    await reference.close();
    check('recycle', emptied && reused > 0 && hash.digest('hex') === expected.digest, { emptied, reused });
  }

  // 5. early break, then close: must not hang or leave unhandled rejections
  {
    const loader = new DataLoader(ds, { ...SYNTHETIC_OPTIONS, augment: true, workers: 2, prefetch: 4 });
    let seen = 0;
    for await (const b of loader.epoch(0)) if (++seen === 2) break;
    await loader.close();
    check('early_break', seen === 2, { seen, stallMs: loader.stallMs });
  }

  process.stdout.write(JSON.stringify({ ok: failures.length === 0, failures, results }) + '\n');
  if (failures.length > 0) process.exitCode = 1;
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.on('unhandledRejection', (e) => {
    process.stdout.write(JSON.stringify({ ok: false, failures: [`unhandled rejection: ${e}`] }) + '\n');
    process.exit(1);
  });
  main().catch((e) => {
    process.stdout.write(JSON.stringify({ ok: false, failures: [String(e?.stack ?? e)] }) + '\n');
    process.exit(1);
  });
}
