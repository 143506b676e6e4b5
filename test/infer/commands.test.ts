// `mae embed` and `mae classify` as a user runs them (the compiled CLI in a child process) on a folder of images and
// the PyTorch fixtures of test/fixtures/pth: the features file matches the library's own embed of the same images,
// class names come from a labels file or the folder, and bad input is a clear error.
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadImages } from '../../lib/data/images.js';
import { classifyImages } from '../../lib/infer/commands.js';
import { readSafetensors } from '../../lib/io/safetensors.js';
import { saveSafetensors } from '../../lib/io/state.js';
import { MaskedAutoencoder } from '../../lib/mae/model.js';
import { tidy } from '../../lib/tensor.js';

const cli = new URL('../../dist/lib/cli.js', import.meta.url).pathname;
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
    for (const flag of ['--checkpoint', '--data', '--out', '--pool', '--batch-size', '--size', '--mean', '--std', '--num-heads', '--decoder-num-heads', '--threads']) expect(help.stdout).toContain(flag);
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
      await expect(classifyImages({ checkpoint: pth('mae-finetuned.pth'), data, overrides: { numHeads: 4 }, topk })).rejects.toThrow(`topk must be a positive integer, got ${topk}`);
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
