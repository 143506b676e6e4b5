import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { threadId } from 'node:worker_threads';
import { afterAll, describe, expect, it } from 'vitest';
import { LOCK_FILE, RUN_FILES, checkRunFolder, loadClassifier, lockRunFolder, releaseRunFolder, removeRun, saveClassifier } from '../../lib/classify/checkpoint.js';
import { VisionTransformerClassifier, classifierConfigFrom } from '../../lib/classify/model.js';
import { readSafetensors, writeSafetensors } from '../../lib/io/safetensors.js';
import { memoryStats } from '../../lib/info.js';
import { endedPid } from '../helpers/processes.js';

const dir = mkdtempSync(join(tmpdir(), 'mae-run-folder-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('run folders of finetune and linprobe', () => {
  it('a folder holds a run when it has a checkpoint, classifier, results, log or probe head', () => {
    expect([...RUN_FILES]).toEqual(['checkpoint.safetensors', 'classifier.safetensors', 'results.json', 'log.jsonl', 'head.safetensors']);
    const out = join(dir, 'a');
    expect(() => checkRunFolder('finetune', out, false)).not.toThrow(); // no folder
    mkdirSync(out);
    writeFileSync(join(out, 'confusion.png'), 'x'); // a figure alone is no run
    expect(() => checkRunFolder('finetune', out, false)).not.toThrow();
    writeFileSync(join(out, 'log.jsonl'), '');
    expect(() => checkRunFolder('linprobe', out, undefined)).toThrow(
      `linprobe: ${out} holds a run already (log.jsonl): choose another folder (--out), or start again there with --overwrite (overwrite), which removes that run's files`,
    );
    expect(() => checkRunFolder('linprobe', out, true, join(dir, 'elsewhere'))).not.toThrow();
    // overwriting the checkpoint the run starts from: the folder or its checkpoint file, however the path is written
    writeFileSync(join(out, 'checkpoint.safetensors'), 'x');
    for (const ck of [out, `${out}/`, join(out, 'checkpoint.safetensors'), join(out, '..', 'a')])
      expect(() => checkRunFolder('finetune', out, true, ck), ck).toThrow(`finetune: ${out} holds the checkpoint this run starts from (${ck}), which --overwrite would remove: choose another folder (--out)`);
    writeFileSync(join(out, 'weights.pth'), 'x'); // a checkpoint that overwriting keeps
    expect(() => checkRunFolder('finetune', out, true, join(out, 'weights.pth'))).not.toThrow();
  });

  it("removeRun removes a run's files and figures and nothing else", () => {
    const out = join(dir, 'b');
    mkdirSync(join(out, 'reconstructions'), { recursive: true });
    for (const f of [...RUN_FILES, 'confusion.png', 'confusion-test.png', 'notes.txt', 'weights.pth']) writeFileSync(join(out, f), 'x');
    for (const f of ['epoch-001.png', 'step-000012.png', 'mine.png']) writeFileSync(join(out, 'reconstructions', f), 'x');
    removeRun(out);
    expect(readdirSync(out).sort()).toEqual(['confusion-test.png', 'notes.txt', 'reconstructions', 'weights.pth']);
    expect(readdirSync(join(out, 'reconstructions'))).toEqual(['mine.png']);
  });
});

describe('the lock of a run folder (pretrain, finetune, linprobe)', () => {
  const inUse = (job: string, out: string, who: string) =>
    `${job}: ${out} is in use by another run (${who}): wait for it to end or choose another folder (--out); if no run writes there, remove ${join(out, LOCK_FILE)}`;

  it('makes the folder and a lock naming this process; a second run into it is refused until the first lets go', () => {
    const out = join(dir, 'lock-a', 'run');
    const warnings: string[] = [];
    const lock = lockRunFolder('pretrain', out, (m) => warnings.push(m));
    const path = join(out, LOCK_FILE);
    expect(JSON.parse(readFileSync(path, 'utf8'))).toEqual({ pid: process.pid, host: hostname(), thread: threadId });
    expect(() => lockRunFolder('finetune', out, (m) => warnings.push(m))).toThrow(inUse('finetune', out, `process ${process.pid} on ${hostname()}`));
    // a lock another thread of this process holds stays
    releaseRunFolder(out, threadId + 1);
    expect(existsSync(path)).toBe(true);
    lock.dispose();
    // the folder it made, left empty, goes with it (the parent it made stays)
    expect(existsSync(out)).toBe(false);
    expect(existsSync(join(dir, 'lock-a'))).toBe(true);
    lockRunFolder('linprobe', out, (m) => warnings.push(m)).dispose();
    expect(warnings).toEqual([]);
    // a folder that cannot be read holds none to remove (releaseRunFolder runs in exit handlers, where a throw is a crash)
    writeFileSync(join(dir, 'lock-a', 'a-file'), '');
    expect(() => releaseRunFolder(join(dir, 'lock-a', 'a-file', 'run'))).not.toThrow();
    expect(() => releaseRunFolder(5 as unknown as string)).not.toThrow(); // pretrainInWorker's outDir, unchecked there
  });

  it("refuses a lock of a live process, of another host or that names none; takes over a dead process's with a warning", () => {
    const out = join(dir, 'lock-b');
    mkdirSync(out);
    const path = join(out, LOCK_FILE);
    const held = (holder: object | string) => writeFileSync(path, typeof holder === 'string' ? holder : JSON.stringify(holder));
    const warnings: string[] = [];
    const take = () => lockRunFolder('pretrain', out, (m) => warnings.push(m));
    held({ pid: process.ppid, host: hostname(), thread: 0 });
    expect(take).toThrow(inUse('pretrain', out, `process ${process.ppid} on ${hostname()}`));
    const dead = endedPid();
    held({ pid: dead, host: 'another-machine', thread: 0 }); // its processes cannot be checked from here
    expect(take).toThrow(inUse('pretrain', out, `process ${dead} on another-machine`));
    for (const damaged of ['', '{"pid": 12', '{"host": "x"}']) {
      held(damaged);
      expect(take, damaged).toThrow(inUse('pretrain', out, `${path} names no process`));
    }
    expect(warnings).toEqual([]);
    held({ pid: dead, host: hostname(), thread: 0 });
    take().dispose();
    // this process's pid in a lock older than the process: a process that had the pid before it (a container's first)
    held({ pid: process.pid, host: hostname(), thread: 0 });
    utimesSync(path, new Date(performance.timeOrigin - 60_000), new Date(performance.timeOrigin - 60_000));
    take().dispose();
    expect(warnings).toEqual([
      `took over ${path}, the lock of a run that ended without removing it (process ${dead}, no longer running)`,
      `took over ${path}, the lock of a run that ended without removing it (process ${process.pid}, no longer running)`,
    ]);
    expect(readdirSync(out)).toEqual([]);
  });

  it('goes when the process exits (process.exit: a second Ctrl-C), and when the warning handler throws', () => {
    const out = join(dir, 'lock-c');
    const module = new URL('../../dist/lib/classify/checkpoint.js', import.meta.url).pathname;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', `import { lockRunFolder } from ${JSON.stringify(module)}; lockRunFolder('pretrain', ${JSON.stringify(out)}, () => {}); process.exit(130);`], { encoding: 'utf8' });
    expect([r.status, r.stderr]).toEqual([130, '']);
    expect(existsSync(out)).toBe(false);
    // a folder that was there stays, empty
    mkdirSync(out);
    writeFileSync(join(out, LOCK_FILE), JSON.stringify({ pid: endedPid(), host: hostname(), thread: 0 }));
    expect(() => lockRunFolder('pretrain', out, () => { throw new Error('the handler threw'); })).toThrow('the handler threw');
    expect(readdirSync(out)).toEqual([]);
  });
});

describe('classifier files', () => {
  const config = classifierConfigFrom({ imgSize: 16, patchSize: 8, inChans: 3, embedDim: 16, depth: 1, numHeads: 2, mlpRatio: 2, eps: 1e-6 }, { numClasses: 3 });

  it('loadClassifier names the file in every error, and checks the metadata config against the tensors before making any weights', async () => {
    const vit = new VisionTransformerClassifier(config, { seed: 1 });
    const good = join(dir, 'good.safetensors');
    await saveClassifier(good, vit);
    const loaded = await loadClassifier(good);
    expect(Array.from(loaded.model.namedParameters()[0]![1].dataSync())).toEqual(Array.from(vit.namedParameters()[0]![1].dataSync()));
    loaded.model.dispose();
    const { tensors, metadata } = await readSafetensors(good);
    const meta = JSON.parse(metadata['mae-classifier']!);
    const variant = async (name: string, mae: string) => {
      const path = join(dir, name);
      await writeSafetensors(path, tensors, { 'mae-classifier': mae });
      return path;
    };
    const notJson = await variant('not-json.safetensors', 'not json');
    await expect(loadClassifier(notJson)).rejects.toThrow(`${notJson}: its "mae-classifier" metadata is not JSON`);
    const nullMeta = await variant('null.safetensors', 'null');
    await expect(loadClassifier(nullMeta)).rejects.toThrow(`${nullMeta}: its "mae-classifier" metadata is not an object`);
    const noConfig = await variant('no-config.safetensors', JSON.stringify({ ...meta, config: undefined }));
    await expect(loadClassifier(noConfig)).rejects.toThrow(`${noConfig}: VisionTransformerClassifier: config must be an object, got undefined`);
    // a config asking for 16M classes against a head of 3: refused from the shapes, before 1 GB of head is made
    const huge = await variant('huge.safetensors', JSON.stringify({ ...meta, config: { ...meta.config, numClasses: 1 << 24 } }));
    const before = memoryStats().peakBytes;
    await expect(loadClassifier(huge)).rejects.toThrow(new RegExp(`^${huge.replace(/[.]/g, '\\.')}: its tensors do not fit the config in its metadata: head\\.weight is \\[3, 16\\], the config's model has \\[16777216, 16\\]`));
    expect(memoryStats().peakBytes - before).toBeLessThan(1 << 28);
    // what sizes the model (tokens, depth) is checked before it is made at all: 4M tokens, or 20000 blocks
    const tokens = await variant('tokens.safetensors', JSON.stringify({ ...meta, config: { ...meta.config, imgSize: 2048, patchSize: 1 } }));
    await expect(loadClassifier(tokens)).rejects.toThrow(`${tokens}: its tensors do not fit the config in its metadata: (imgSize / patchSize)^2 + 1 tokens 4194305 in the config, 5 in the tensors`);
    const deep = await variant('deep.safetensors', JSON.stringify({ ...meta, config: { ...meta.config, depth: 20000 } }));
    await expect(loadClassifier(deep)).rejects.toThrow(`${deep}: its tensors do not fit the config in its metadata: depth 20000 in the config, 1 in the tensors`);
    expect(memoryStats().peakBytes - before).toBeLessThan(1 << 28);
    await expect(saveClassifier(join(dir, 'x.safetensors'), vit, { format: 'other' })).rejects.toThrow("saveClassifier: " + join(dir, 'x.safetensors') + " not written: extra may not set 'format'");
    vit.dispose();
  });

  it('saveClassifier names the key of extra metadata that JSON cannot store, and writes nothing', async () => {
    const vit = new VisionTransformerClassifier(config, { seed: 1 });
    const path = join(dir, 'unstorable.safetensors');
    const loop: Record<string, unknown> = {};
    loop.again = loop;
    for (const [extra, problem] of [
      [{ recipe: { steps: [1, 2n] } }, 'extra.recipe.steps[1] is a BigInt'],
      [{ recipe: loop }, 'extra.recipe.again refers back to extra.recipe (a circular reference)'],
    ] as const)
      await expect(saveClassifier(path, vit, extra)).rejects.toThrow(new Error(`saveClassifier: ${path} not written, JSON cannot store its metadata: ${problem}`));
    expect(existsSync(path)).toBe(false);
    vit.dispose();
  });
});
