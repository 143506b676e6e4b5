// `mae embed` and `mae classify` as a user runs them (the compiled CLI in a child process) on a folder of images and
// the PyTorch fixtures of test/fixtures/pth: the features file matches the library's own embed of the same images,
// class names come from a labels file or the folder, and bad input is a clear error.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadImages } from '../../lib/data/images.js';
import { readSafetensors } from '../../lib/io/safetensors.js';
import { saveSafetensors } from '../../lib/io/state.js';
import { MaskedAutoencoder } from '../../lib/mae/model.js';
import { Tensor, tidy } from '../../lib/tensor.js';

const cli = new URL('../../dist/lib/cli.js', import.meta.url).pathname;
// the compiled package (dist/, npm run build): the models run in worker threads, which run compiled JavaScript
const { classifyImages, embedImages } = (await import(new URL('../../dist/lib/infer/commands.js', import.meta.url).href)) as typeof import('../../lib/infer/commands.js');
const fixtures = new URL('../fixtures/', import.meta.url).pathname;
const pth = (f: string) => join(fixtures, 'pth', f);
const tmp = mkdtempSync(join(tmpdir(), 'mae-embed-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const data = join(tmp, 'images');
for (const [cls, name, src] of [['cat', 'a.png', 'wide.png'], ['dog', 'b.png', 'tall.png'], ['dog', 'c.png', 'wide.png']] as const) {
  mkdirSync(join(data, cls), { recursive: true });
  copyFileSync(join(fixtures, 'eval-transform', src), join(data, cls, name));
}
const mae = (args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 120_000 });

describe('mae embed', () => {
  it('writes cls features, labels and file names that match embed() on loadImages', async () => {
    const out = join(tmp, 'features.safetensors');
    const r = mae(['embed', '--checkpoint', pth('checkpoint-3.pth'), '--data', data, '--out', out, '--num-heads', '4', '--decoder-num-heads', '2', '--batch-size', '2']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain(`wrote 3 x 32 cls features to ${out}`);
    expect(r.stderr).toMatch(/embedding \[=+\] 3\/3 images/);
    const { tensors, metadata } = await readSafetensors(out);
    expect(JSON.parse(metadata.files!)).toEqual(['cat/a.png', 'dog/b.png', 'dog/c.png']);
    expect(JSON.parse(metadata.classes!)).toEqual(['cat', 'dog']);
    expect(Array.from(tensors.get('labels')!.data)).toEqual([0, 1, 1]);
    const features = tensors.get('features')!;
    expect(features.shape).toEqual([3, 32]);
    const model = await MaskedAutoencoder.fromPretrained(pth('checkpoint-3.pth'), { numHeads: 4, decoderNumHeads: 2 });
    const images = await loadImages([join(data, 'cat/a.png'), join(data, 'dog/b.png'), join(data, 'dog/c.png')], { size: 32 });
    const tokens = tidy(() => model.embed(images).dataSync());
    for (let n = 0; n < 3; n++)
      for (let d = 0; d < 32; d++) expect(Math.abs(features.data[n * 32 + d]! - tokens[n * 17 * 32 + d]!)).toBeLessThan(1e-5); // other batches: other block sums
    images.dispose();
    model.dispose();
  });

  it('an image that cannot be read is left out and listed (skip, the default), or ends the run naming it (stop)', async () => {
    // a folder with a file that is no image among the others, in the middle of a batch of 2
    const mixed = join(tmp, 'mixed');
    for (const [cls, name] of [['cat', 'a.png'], ['dog', 'b.png'], ['dog', 'c.png']] as const) {
      mkdirSync(join(mixed, cls), { recursive: true });
      copyFileSync(join(data, cls, name), join(mixed, cls, name));
    }
    writeFileSync(join(mixed, 'cat', 'b-broken.jpg'), 'not an image');
    const out = join(tmp, 'mixed.safetensors');
    const opts = { checkpoint: pth('checkpoint-3.pth'), data: mixed, out, overrides: { numHeads: 4, decoderNumHeads: 2 }, batchSize: 2 };
    const r = await embedImages(opts);
    expect(r.count).toBe(3);
    expect(r.skipped).toEqual([{ file: join(mixed, 'cat', 'b-broken.jpg'), error: expect.stringMatching(/^\S+b-broken\.jpg: cannot load image: /) }]);
    // the rows are the images read, each with its file and label: the same features as from the folder without it
    const { tensors, metadata } = await readSafetensors(out);
    expect(JSON.parse(metadata.files!)).toEqual(['cat/a.png', 'dog/b.png', 'dog/c.png']);
    expect(Array.from(tensors.get('labels')!.data)).toEqual([0, 1, 1]);
    const clean = await readSafetensors((await embedImages({ ...opts, data, out: join(tmp, 'clean.safetensors') })).out);
    const [got, want] = [tensors.get('features')!.data, clean.tensors.get('features')!.data];
    expect(got.length).toBe(want.length);
    for (let i = 0; i < got.length; i++) expect(Math.abs(got[i]! - want[i]!)).toBeLessThan(1e-5);
    await expect(embedImages({ ...opts, onBadFile: 'stop' })).rejects.toThrow(/b-broken\.jpg: cannot load image: /);
    await expect(embedImages({ ...opts, onBadFile: 'skip!' as 'skip' })).rejects.toThrow("embedImages: onBadFile must be 'skip' or 'stop', got the string 'skip!'");
    // none read: the image's own error
    await expect(embedImages({ ...opts, data: join(mixed, 'cat', 'b-broken.jpg') })).rejects.toThrow(/^\S+b-broken\.jpg: cannot load image: /);
    // the command says which were left out; with stop it ends naming the file
    const cli = mae(['embed', '--checkpoint', pth('checkpoint-3.pth'), '--data', mixed, '--out', out, '--num-heads', '4', '--decoder-num-heads', '2', '--batch-size', '2']);
    expect(cli.status, cli.stderr).toBe(0);
    expect(cli.stderr).toMatch(/warning: 1 image could not be read and was left out .*\n  \S+b-broken\.jpg: cannot load image: /);
    expect(cli.stdout).toContain(`wrote 3 x 32 cls features to ${out}`);
    const stop = mae(['embed', '--checkpoint', pth('checkpoint-3.pth'), '--data', mixed, '--out', out, '--num-heads', '4', '--decoder-num-heads', '2', '--on-bad-file', 'stop']);
    expect(stop.status).toBe(1);
    expect(stop.stderr).toMatch(/mae embed: \S+b-broken\.jpg: cannot load image: /);
    expect(mae(['embed', '--checkpoint', pth('checkpoint-3.pth'), '--data', mixed, '--on-bad-file', 'ignore']).stderr).toBe("mae embed: --on-bad-file must be skip or stop, got 'ignore'\n");
    // classify: the results and the accuracy are of the images read
    const seen: string[] = [];
    const c = await classifyImages({ checkpoint: pth('mae-finetuned.pth'), data: mixed, overrides: { numHeads: 4 }, batchSize: 2, onResult: (f) => seen.push(f) });
    expect(seen).toEqual([join(mixed, 'cat', 'a.png'), join(mixed, 'dog', 'b.png'), join(mixed, 'dog', 'c.png')]);
    expect(c.count).toBe(3);
    expect(c.skipped.map((x) => x.file)).toEqual([join(mixed, 'cat', 'b-broken.jpg')]);
    await expect(classifyImages({ checkpoint: pth('mae-finetuned.pth'), data: mixed, overrides: { numHeads: 4 }, onBadFile: 'stop' })).rejects.toThrow(/b-broken\.jpg: cannot load image: /);
  });

  it('stops between batches when its signal is aborted, writing nothing (embed and classify)', async () => {
    const out = join(tmp, 'stopped.safetensors');
    const stop = new AbortController();
    const done: number[] = [];
    const run = embedImages({ checkpoint: pth('checkpoint-3.pth'), data, out, overrides: { numHeads: 4, decoderNumHeads: 2 }, batchSize: 1, signal: stop.signal, onProgress: (n) => (done.push(n), stop.abort()) });
    await expect(run).rejects.toThrow(/aborted/);
    expect(done).toEqual([1]);
    expect(existsSync(out)).toBe(false);
    const seen: string[] = [];
    const stop2 = new AbortController();
    await expect(classifyImages({ checkpoint: pth('mae-finetuned.pth'), data, overrides: { numHeads: 4 }, batchSize: 2, signal: stop2.signal, onResult: (f) => (seen.push(f), stop2.abort()) })).rejects.toThrow(/aborted/);
    expect(seen).toHaveLength(2);
    // aborted before: no work at all
    await expect(embedImages({ checkpoint: pth('checkpoint-3.pth'), data, out, overrides: { numHeads: 4, decoderNumHeads: 2 }, signal: AbortSignal.abort() })).rejects.toThrow(/aborted/);
    expect(existsSync(out)).toBe(false);
  });

  it('mean pooling, and usage errors', async () => {
    const out = join(tmp, 'mean.safetensors');
    const r = mae(['embed', '--checkpoint', pth('mae-encoder.pth'), '--data', join(data, 'dog', 'b.png'), '--out', out, '--pool', 'mean', '--num-heads', '4']);
    expect(r.status, r.stderr).toBe(0);
    expect((await readSafetensors(out)).metadata.pool).toBe('mean');
    const noHeads = mae(['embed', '--checkpoint', pth('checkpoint-3.pth'), '--data', data, '--out', out]);
    expect(noHeads.status).toBe(1);
    expect(noHeads.stderr).toMatch(/number of encoder heads cannot be read .*--num-heads N/);
    expect(mae(['embed', '--data', data]).stderr).toMatch(/--checkpoint FILE is required/);
    expect(mae(['embed', '--checkpoint', pth('mae-encoder.pth'), '--data', data, '--pool', 'max']).stderr).toMatch(/--pool must be cls or mean/);
    const help = mae(['embed', '--help']);
    expect(help.stdout).toContain('--out');
    for (const flag of ['--checkpoint', '--data', '--out', '--pool', '--batch-size', '--size', '--mean', '--std', '--num-heads', '--decoder-num-heads', '--threads']) expect(help.stdout).toContain(flag);
  });
});

describe('embedImages: a checkpoint of the wrong kind', () => {
  it('refuses a fine-tuned classifier (fc_norm, no final norm) saying what it is, before writing anything', async () => {
    const out = join(tmp, 'fine-tuned.safetensors');
    const why = `${pth('mae-finetuned.pth')}: a fine-tuned classifier (global pooling and fc_norm; the encoder's final norm is not kept): embed takes a pre-training checkpoint or a linear probe's classifier; mae classify runs a fine-tuned one`;
    await expect(embedImages({ checkpoint: pth('mae-finetuned.pth'), data, out, overrides: { numHeads: 4 } })).rejects.toThrow(why);
    const r = mae(['embed', '--checkpoint', pth('mae-finetuned.pth'), '--data', data, '--out', out, '--num-heads', '4']);
    expect([r.status, r.stdout, r.stderr]).toEqual([1, '', `mae embed: ${why}\n`]);
    expect(existsSync(out)).toBe(false);
  });
});

describe('mae classify', () => {
  it('prints the top classes with names from a labels file, or indices; a labels file of the wrong length is refused', () => {
    const labels = join(tmp, 'labels.txt');
    writeFileSync(labels, 'apple\nbanana\ncherry\ndate\nelder\n');
    const r = mae(['classify', '--checkpoint', pth('mae-finetuned.pth'), '--data', data, '--labels', labels, '--num-heads', '4']);
    expect(r.status, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(3);
    for (const line of lines) expect(line).toMatch(/\.png\t(\w+ [01]\.\d{3} {2}){4}\w+ [01]\.\d{3}$/);
    writeFileSync(labels, 'apple\r\nbanana\r\ncherry\r\ndate\r\nelder');
    const crlf = mae(['classify', '--checkpoint', pth('mae-finetuned.pth'), '--data', data, '--labels', labels, '--num-heads', '4', '--topk', '1']);
    expect(crlf.status, crlf.stderr).toBe(0);
    expect(crlf.stdout).toMatch(/a\.png\t(apple|banana|cherry|date|elder) [01]\.\d{3}\n/);
    const indices = mae(['classify', '--checkpoint', pth('mae-finetuned.pth'), '--data', data, '--num-heads', '4', '--topk', '2']);
    expect(indices.stdout).toMatch(/a\.png\t\d \d\.\d{3} {2}\d \d\.\d{3}\n/);
    writeFileSync(labels, 'apple\nbanana\n');
    const bad = mae(['classify', '--checkpoint', pth('mae-finetuned.pth'), '--data', data, '--labels', labels, '--num-heads', '4']);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toContain('2 class names, but the model has 5 classes');
    const help = mae(['classify', '--help']);
    for (const flag of ['--checkpoint', '--data', '--labels', '--topk', '--batch-size', '--size', '--num-heads']) expect(help.stdout).toContain(flag);
  });
});

describe('classifyImages', () => {
  it('refuses a topk that is not a positive integer', async () => {
    for (const topk of [0, -1, 1.5])
      await expect(classifyImages({ checkpoint: pth('mae-finetuned.pth'), data, overrides: { numHeads: 4 }, topk })).rejects.toThrow(`classifyImages: topk must be an integer >= 1, got the number ${topk}`);
  });

  it('refuses a labels file with a blank name, by its line number (later names would shift to the wrong class)', async () => {
    const labels = join(tmp, 'blank.txt');
    const run = () => classifyImages({ checkpoint: pth('mae-finetuned.pth'), data, overrides: { numHeads: 4 }, labels });
    writeFileSync(labels, 'apple\n\ncherry\ndate\nelder\n');
    await expect(run()).rejects.toThrow(`${labels}: line 2 is blank`);
    writeFileSync(labels, 'apple\r\nbanana\r\ncherry\r\ndate\r\n  \r\n');
    await expect(run()).rejects.toThrow(`${labels}: line 5 is blank`);
    // one final newline ends the last line; a second one is a blank line
    writeFileSync(labels, 'apple\nbanana\ncherry\ndate\nelder\n\n');
    await expect(run()).rejects.toThrow(`${labels}: line 6 is blank`);
  });

  it('refuses a pre-training checkpoint (no head) saying what it is and what classify takes, not how to make a new head', async () => {
    const why = `${pth('mae-encoder.pth')}: no classifier head among the weights: a pre-training checkpoint (its encoder's features are what mae embed writes); classify takes a fine-tuned one (mae finetune or linprobe, mae_finetuned_vit_*.pth)`;
    await expect(classifyImages({ checkpoint: pth('mae-encoder.pth'), data, overrides: { numHeads: 4 } })).rejects.toThrow(why);
    const r = mae(['classify', '--checkpoint', pth('mae-encoder.pth'), '--data', data, '--num-heads', '4']);
    expect([r.status, r.stdout, r.stderr]).toEqual([1, '', `mae classify: ${why}\n`]);
  });
});

describe('embed and classify: output and labels paths checked before any work', () => {
  it('embedImages refuses an out that is empty, a folder or under a file, naming it, before embedding anything', async () => {
    const file = join(tmp, 'a-file');
    writeFileSync(file, 'x');
    let batches = 0;
    const run = (out: string) => embedImages({ checkpoint: pth('checkpoint-3.pth'), data, out, overrides: { numHeads: 4, decoderNumHeads: 2 }, onProgress: () => batches++ });
    await expect(run('')).rejects.toThrow('out: the output file path is empty');
    await expect(run(tmp)).rejects.toThrow(`out ${tmp}: is a folder; give the path of the file to write`);
    await expect(run(join(tmp, 'not-yet') + '/')).rejects.toThrow(`out ${join(tmp, 'not-yet')}/: ends in '/', a folder; give the path of the file to write`);
    await expect(run(join(file, 'features.safetensors'))).rejects.toThrow(`out ${join(file, 'features.safetensors')}: cannot create the folder ${file}: a file of that name exists`);
    await expect(run(join(file, 'sub', 'features.safetensors'))).rejects.toThrow(`out ${join(file, 'sub', 'features.safetensors')}: ENOTDIR`);
    // the checkpoint itself (a file, or the weights file of a run folder, through a link too): writing would replace it
    const ckpt = join(tmp, 'ckpt-copy.pth');
    copyFileSync(pth('checkpoint-3.pth'), ckpt);
    const link = join(tmp, 'ckpt-link.pth');
    symlinkSync(ckpt, link);
    const refuse = (o: { checkpoint: string; out: string }, why: string) =>
      expect(embedImages({ ...o, data, overrides: { numHeads: 4, decoderNumHeads: 2 }, onProgress: () => batches++ })).rejects.toThrow(why);
    await refuse({ checkpoint: ckpt, out: link }, `out ${link}: is the checkpoint's weights file (--checkpoint ${ckpt}), which writing would replace; give another path`);
    const runDir = join(tmp, 'a-run');
    mkdirSync(runDir);
    await saveSafetensors(join(runDir, 'checkpoint.safetensors'), new Map([['x', Tensor.fromArray([1], [1])]]));
    await refuse({ checkpoint: runDir, out: join(runDir, 'checkpoint.safetensors') }, `out ${join(runDir, 'checkpoint.safetensors')}: is the checkpoint's weights file (--checkpoint ${runDir})`);
    expect(readFileSync(ckpt)).toEqual(readFileSync(pth('checkpoint-3.pth')));
    expect(batches).toBe(0);
    expect(existsSync(join(tmp, 'not-yet'))).toBe(false);
    // a missing folder is made, and the file written there
    const out = join(tmp, 'made', 'here', 'features.safetensors');
    expect(await run(out)).toEqual({ count: 3, dim: 32, out, skipped: [] });
    expect(batches).toBe(1);
    expect((await readSafetensors(out)).tensors.get('features')!.shape).toEqual([3, 32]);
  });

  it('mae embed names --out when it cannot be written, before embedding', () => {
    const r = mae(['embed', '--checkpoint', pth('checkpoint-3.pth'), '--data', data, '--out', tmp, '--num-heads', '4', '--decoder-num-heads', '2']);
    expect(r.status).toBe(1);
    expect(r.stderr).toBe(`mae embed: --out ${tmp}: is a folder; give the path of the file to write\n`);
    const empty = mae(['embed', '--checkpoint', pth('checkpoint-3.pth'), '--data', data, '--out', '', '--num-heads', '4', '--decoder-num-heads', '2']);
    expect([empty.status, empty.stderr]).toEqual([2, 'mae embed: --out is empty\n']); // as every flag given an empty value
  });

  it('classify: a labels path that is a folder is named as such', async () => {
    await expect(classifyImages({ checkpoint: pth('mae-finetuned.pth'), data, overrides: { numHeads: 4 }, labels: tmp })).rejects.toThrow(
      `${tmp}: is a folder, not a labels file (a text file of class names, one a line, in class-index order)`,
    );
    const r = mae(['classify', '--checkpoint', pth('mae-finetuned.pth'), '--data', data, '--labels', tmp, '--num-heads', '4']);
    expect(r.status).toBe(1);
    expect(r.stderr).toBe(`mae classify: ${tmp}: is a folder, not a labels file (a text file of class names, one a line, in class-index order)\n`);
  });
});

describe('classify: accuracy only where each folder\'s class is known', () => {
  const checkpoint = pth('mae-finetuned.pth');
  const overrides = { numHeads: 4 };
  // the labels file's order is not the folders' sorted order: alpha bravo charlie delta echo are classes 1 3 4 0 2
  const names = ['delta', 'alpha', 'echo', 'bravo', 'charlie'];
  const labels = join(tmp, 'shuffled-labels.txt');
  writeFileSync(labels, names.join('\n') + '\n');

  /** each image in the folder of the class the model predicts for it (top-1), and a folder for every class; or in `put`'s */
  async function layout(dir: string, put?: (predicted: number, i: number) => string): Promise<void> {
    const predicted: number[] = [];
    await classifyImages({ checkpoint, data, overrides, topk: 1, onResult: (_, top) => predicted.push(top[0]!.index) });
    const sources = [join(data, 'cat/a.png'), join(data, 'dog/b.png'), join(data, 'dog/c.png')];
    if (!put) for (const n of names) mkdirSync(join(dir, n), { recursive: true });
    sources.forEach((src, i) => {
      const folder = join(dir, put ? put(predicted[i]!, i) : names[predicted[i]!]!);
      mkdirSync(folder, { recursive: true });
      copyFileSync(src, join(folder, `${i}.png`));
    });
  }

  it('with --labels, folders are matched to classes by name: every image in the folder of its predicted class scores 100%', async () => {
    const dir = join(tmp, 'by-name');
    await layout(dir);
    const r = await classifyImages({ checkpoint, data: dir, overrides, labels, topk: 1 });
    expect([r.top1, r.topk, r.notScored]).toEqual([1, 1, null]);
    expect(r.scoredBy).toBe(`labels matched by name: each class folder is the class of that name in ${labels}`);
    const cli = mae(['classify', '--checkpoint', checkpoint, '--data', dir, '--labels', labels, '--num-heads', '4', '--topk', '1']);
    expect(cli.status, cli.stderr).toBe(0);
    expect(cli.stdout.trim().split('\n').pop()).toBe(`top-1 100.00%  top-1 100.00% on 3 images (labels matched by name: each class folder is the class of that name in ${labels})`);
    // without --labels the same folders, sorted, are taken for the classes by position: scored, and said so
    const byPosition = await classifyImages({ checkpoint, data: dir, overrides, topk: 1 });
    expect(byPosition.scoredBy).toBe("labels from the folder layout: the 5 class folders in sorted order are the model's classes");
    expect(byPosition.names).toEqual(['alpha', 'bravo', 'charlie', 'delta', 'echo']);
    // a folder without images need not be a class name
    mkdirSync(join(dir, 'zz-empty'));
    expect((await classifyImages({ checkpoint, data: dir, overrides, labels })).top1).toBe(1);
  });

  it('a folder (with images) whose name is not a class name, or names two classes, gives no accuracy and says why', async () => {
    const one = join(tmp, 'one-unknown');
    await layout(one, (_, i) => ['alpha', 'zulu', 'bravo'][i]!);
    const r1 = await classifyImages({ checkpoint, data: one, overrides, labels });
    expect([r1.top1, r1.topk, r1.scoredBy]).toEqual([null, null, null]);
    expect(r1.notScored).toBe(`class folder 'zulu' is not among the class names of ${labels}`);
    const cli = mae(['classify', '--checkpoint', checkpoint, '--data', one, '--labels', labels, '--num-heads', '4']);
    expect(cli.status, cli.stderr).toBe(0);
    expect(cli.stdout).not.toMatch(/top-1/);
    expect(cli.stderr).toContain(`no accuracy: class folder 'zulu' is not among the class names of ${labels}\n`);
    const three = join(tmp, 'three-unknown');
    await layout(three, (_, i) => ['zulu', 'xray', 'alpha'][i]!);
    expect((await classifyImages({ checkpoint, data: three, overrides, labels })).notScored).toBe(`class folders 'xray', 'zulu' are not among the class names of ${labels}`);
    // folders that none of the names are (as many as the classes): by position, as without --labels
    const synsets = join(tmp, 'synsets');
    await layout(synsets, (p) => `n0${p}`);
    for (let c = 0; c < 5; c++) mkdirSync(join(synsets, `n0${c}`), { recursive: true });
    const bySynset = await classifyImages({ checkpoint, data: synsets, overrides, labels });
    expect([bySynset.top1, bySynset.notScored]).toEqual([1, null]);
    expect(bySynset.scoredBy).toBe(`labels from the folder layout: the 5 class folders in sorted order are the model's classes (no folder is named as a class of ${labels})`);
    rmSync(join(synsets, 'n04'), { recursive: true, force: true });
    const fewer = await classifyImages({ checkpoint, data: synsets, overrides, labels });
    expect(fewer.notScored).toBe(`no class folder is named as a class of ${labels}, and the data has 4 class folders for the model's 5 classes`);
    const twice = join(tmp, 'twice.txt');
    writeFileSync(twice, 'zulu\nbravo\nzulu\ndelta\necho\n');
    const r2 = await classifyImages({ checkpoint, data: one, overrides, labels: twice });
    expect([r2.top1, r2.notScored]).toEqual([null, `class folder 'zulu' is the name of classes 0 and 2 of ${twice}`]);
  });

  it('without --labels, as many class folders as classes are needed; else no accuracy and why, and none for a flat folder', async () => {
    const r = await classifyImages({ checkpoint, data, overrides });
    expect([r.top1, r.scoredBy]).toEqual([null, null]);
    expect(r.notScored).toBe("the data has 2 class folders and the model 5 classes; --labels FILE (the model's class names) would match the folders to them by name");
    const cli = mae(['classify', '--checkpoint', checkpoint, '--data', data, '--num-heads', '4']);
    expect(cli.status, cli.stderr).toBe(0);
    expect(cli.stderr).toContain(`no accuracy: ${r.notScored}\n`);
    const flat = await classifyImages({ checkpoint, data: join(data, 'dog'), overrides });
    expect([flat.top1, flat.scoredBy, flat.notScored]).toEqual([null, null, null]);
    expect(mae(['classify', '--help']).stdout).toContain('with --labels, the class whose name is the folder\'s name');
  });
});

describe('other commands take other code\'s checkpoints', () => {
  it('mae visualize draws from a Hugging Face folder, and refuses an encoder-only checkpoint', async () => {
    const png = join(tmp, 'v.png');
    const r = mae(['visualize', '--checkpoint', pth('hf-safetensors'), '--data-kind', 'synthetic', '--count', '2', '--out', png]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain(`wrote ${png}`);
    // an encoder-only file of an official width (192: ViT-Tiny, 3 heads), as the released mae_pretrain_vit_*.pth
    const model = new MaskedAutoencoder({ imgSize: 16, patchSize: 8, embedDim: 192, depth: 1, numHeads: 3, decoderEmbedDim: 16, decoderDepth: 1, decoderNumHeads: 2 });
    const encoder = new Map([...model.stateDict()].filter(([k]) => !k.startsWith('decoder') && k !== 'mask_token'));
    const file = join(tmp, 'encoder.safetensors');
    await saveSafetensors(file, encoder);
    model.dispose();
    const refused = mae(['visualize', '--checkpoint', file, '--data-kind', 'synthetic']);
    expect(refused.status).toBe(2);
    expect(refused.stderr).toMatch(/holds the encoder only .*reconstructions need the decoder/);
  });
});
