// prepareShards (lib/data/prepare.ts): round trip of pixels, labels and names, raw and JPEG; bad files skipped or
// stopping the run; interruption and resume (through the API's signal, and through \`mae prepare-data\` stopped by
// SIGINT and killed by SIGKILL); checks of the settings and of the source folder on resume.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SHARD_INDEX_FILE, ShardDataset, decodeImageFile, prepareShards, readShardIndex, type PrepareEvent } from '../../lib/data/index.js';
import { crc32 } from '../../lib/io/crc32.js';
import { smoothPixels, writeImage } from '../helpers/images.js';

const root = mkdtempSync(join(tmpdir(), 'mae-prepare-'));
const src = join(root, 'src'); // class folders of PNG images of several sizes, a JPEG and two bad files
afterAll(() => rmSync(root, { recursive: true, force: true }));

const SIZES: [string, number, number][] = [
  ['ant/a.png', 30, 20], ['ant/b.png', 17, 25], ['ant/c.jpg', 24, 24], ['ant/d.png', 9, 12],
  ['bee/e.png', 40, 33], ['bee/f.png', 21, 21], ['bee/g.png', 16, 28], ['cow/h.png', 19, 13], ['cow/i.png', 25, 31],
];
const GOOD = SIZES.map(([name]) => name).sort();
const BAD = ['bee/broken.png', 'cow/truncated.png'];

beforeAll(async () => {
  for (const d of ['ant', 'bee', 'cow']) mkdirSync(join(src, d), { recursive: true });
  for (const [k, [name, h, w]] of SIZES.entries()) await writeImage(join(src, name), h, w, k);
  writeFileSync(join(src, 'bee', 'broken.png'), 'not a png at all');
  const good = readFileSync(join(src, 'cow', 'h.png'));
  writeFileSync(join(src, 'cow', 'truncated.png'), good.subarray(0, good.length - 30));
});

/** Every sample's pixels, label and size, in order. */
async function contents(ds: ShardDataset): Promise<{ label: number; height: number; width: number; pixels: number[] }[]> {
  const out = [];
  for (let i = 0; i < ds.length; i++) {
    const s = await ds.getPixels(i);
    out.push({ label: s.label, height: s.height, width: s.width, pixels: Array.from(s.pixels) });
  }
  return out;
}

describe('prepareShards', () => {
  it('stores raw pixels, labels, classes and source names; skips bad files by path; splits into shards', async () => {
    const out = join(root, 'raw-full');
    const events: PrepareEvent[] = [];
    const r = await prepareShards({ data: src, out, shortSide: null, shardBytes: 2000, onEvent: (e) => events.push(e) });
    expect(r).toMatchObject({ complete: true, samples: 9, index: join(out, SHARD_INDEX_FILE) });
    expect(r.skipped.map((s) => s.source)).toEqual(BAD);
    const badEvents = events.filter((e) => e.type === 'bad-file');
    expect(badEvents.map((e) => (e as { path: string }).path)).toEqual(BAD.map((b) => join(src, b)));
    expect(r.skipped[0]!.error).toContain(`${join(src, 'bee', 'broken.png')}: cannot decode image`);
    expect(events.at(-1)).toMatchObject({ type: 'end', complete: true, samples: 9, skipped: 2 });
    expect(events.filter((e) => e.type === 'progress').at(-1)).toMatchObject({ done: 11, files: 11 });

    const index = await readShardIndex(out);
    expect(index).toMatchObject({ format: 'mae-shards', version: 2, pixels: 'raw', channels: 3, shortSide: null, quality: null, root: src, classes: ['ant', 'bee', 'cow'], count: 9 });
    expect(index.source).toEqual(GOOD);
    expect(index.label).toEqual(GOOD.map((n) => ['ant', 'bee', 'cow'].indexOf(n.split('/')[0]!)));
    expect(index.shards.length).toBeGreaterThan(3);
    expect(readdirSync(out).sort()).toEqual([SHARD_INDEX_FILE, ...index.shards.map((s) => s.file)].sort()); // .prepare/ removed
    for (const [k, s] of index.shards.entries()) {
      const records = index.shard.map((sh, i) => [sh, i]).filter(([sh]) => sh === k).map(([, i]) => i!);
      expect(records.reduce((n, i) => n + index.size[i]!, 0)).toBe(s.bytes); // back to back, nothing else
      const bytes = readFileSync(join(out, s.file));
      for (const i of records) expect(index.crc32![i], `sample ${i}`).toBe(crc32(bytes.subarray(index.offset[i]!, index.offset[i]! + index.size[i]!)));
    }

    const ds = await ShardDataset.open(out);
    expect([ds.length, ds.numClasses, ds.channels, ds.height, ds.width]).toEqual([9, 3, 3, 0, 0]);
    for (let i = 0; i < ds.length; i++) {
      const decoded = await decodeImageFile(join(src, GOOD[i]!), 3);
      const s = await ds.getPixels(i);
      expect([s.height, s.width]).toEqual([decoded.height, decoded.width]);
      expect(Buffer.compare(Buffer.from(s.pixels), Buffer.from(decoded.pixels)), GOOD[i]).toBe(0);
      const [, h, w] = SIZES.find(([n]) => n === GOOD[i])!;
      if (GOOD[i]!.endsWith('.png')) expect(Buffer.compare(Buffer.from(s.pixels), smoothPixels(h, w, SIZES.findIndex(([n]) => n === GOOD[i])))).toBe(0);
      const f = await ds.get(i);
      expect(f.image[0]).toBeCloseTo(s.pixels[0]! / 255, 7);
      expect(f.label).toBe(s.label);
    }
  });

  it('shrinks to the short side as the folder dataset does, and re-encodes as JPEG close to the raw pixels', async () => {
    const raw = await ShardDataset.open((await prepareShards({ data: src, out: join(root, 'raw-16'), shortSide: 16 })).dir);
    const jpeg = await ShardDataset.open((await prepareShards({ data: src, out: join(root, 'jpeg-16'), shortSide: 16, format: 'jpeg', quality: 92 })).dir);
    expect((await readShardIndex(jpeg.spec.index.replace(`/${SHARD_INDEX_FILE}`, ''))).quality).toBe(92);
    for (let i = 0; i < raw.length; i++) {
      const expected = await decodeImageFile(join(src, GOOD[i]!), 3, 16);
      const r = await raw.getPixels(i);
      const j = await jpeg.getPixels(i);
      expect(Math.min(r.height, r.width)).toBe(Math.min(16, Math.min(...SIZES.find(([n]) => n === GOOD[i])!.slice(1) as number[])));
      expect(Buffer.compare(Buffer.from(r.pixels), Buffer.from(expected.pixels))).toBe(0);
      expect([j.height, j.width, j.label]).toEqual([r.height, r.width, r.label]);
      let err = 0;
      for (let k = 0; k < r.pixels.length; k++) err += Math.abs(r.pixels[k]! - j.pixels[k]!);
      expect(err / r.pixels.length).toBeLessThan(4); // mean error in 0..255 levels at quality 92
    }
    const bytes = (ds: ShardDataset) => ds.spec.size.reduce((a, b) => a + b, 0);
    expect(bytes(jpeg)).toBeLessThan(bytes(raw));
  });

  it("stops at a bad file with on-bad-file 'stop' (naming it), keeps the shards done, and resumes once it is fixed", async () => {
    const data = join(root, 'stop-src');
    for (const d of ['a', 'b']) mkdirSync(join(data, d), { recursive: true });
    for (let k = 0; k < 6; k++) await writeImage(join(data, k < 3 ? 'a' : 'b', `${k}.png`), 10, 12, k);
    writeFileSync(join(data, 'b', '4.png'), 'junk');
    const out = join(root, 'stop-out');
    await expect(prepareShards({ data, out, onBadFile: 'stop', shardBytes: 1 })).rejects.toThrow(`${join(data, 'b', '4.png')}: cannot decode image`);
    expect(existsSync(join(out, SHARD_INDEX_FILE))).toBe(false);
    await expect(ShardDataset.open(out)).rejects.toThrow(`${out}: the preparation of these shards did not finish`);
    expect(readdirSync(join(out, '.prepare')).sort()).toEqual(['settings.json', 'shard-00000.json', 'shard-00001.json', 'shard-00002.json', 'shard-00003.json']);
    await writeImage(join(data, 'b', '4.png'), 10, 12, 4);
    const events: PrepareEvent[] = [];
    const r = await prepareShards({ data, out, onBadFile: 'stop', shardBytes: 1, onEvent: (e) => events.push(e) });
    expect(events[0]).toEqual({ type: 'start', files: 6, done: 4, shards: 4 });
    expect(r).toMatchObject({ complete: true, samples: 6, shards: 6, skipped: [] });
  });

  it('resumes after an interruption and after a crash, giving the samples of an uninterrupted run', async () => {
    const whole = await contents(await ShardDataset.open((await prepareShards({ data: src, out: join(root, 'whole'), shortSide: 20 })).dir));
    const out = join(root, 'interrupted');
    const abort = new AbortController();
    let seen = 0;
    const first = await prepareShards({
      data: src, out, shortSide: 20, shardBytes: 1500, signal: abort.signal,
      onEvent: (e) => {
        if (e.type === 'progress' && ++seen === 5) abort.abort();
      },
    });
    expect(first).toMatchObject({ complete: false, index: null });
    expect(first.shards).toBeGreaterThan(0);
    await expect(ShardDataset.open(out)).rejects.toThrow('run the same mae prepare-data command again to resume it');
    // a crash in the next shard: its temporary file, and a shard file no manifest covers
    writeFileSync(join(out, `.shard-${String(first.shards).padStart(5, '0')}.bin.999.abcdef.tmp`), 'partial');
    writeFileSync(join(out, `shard-${String(first.shards + 1).padStart(5, '0')}.bin`), 'stale');
    await expect(prepareShards({ data: src, out, shortSide: 20, format: 'jpeg' })).rejects.toThrow(`${out} holds an unfinished preparation with other settings: pixels "raw" (now "jpeg"), quality null (now 90)`);
    await expect(prepareShards({ data: src, out, shortSide: 24 })).rejects.toThrow('shortSide 20 (now 24)');
    // manifests as a preparation started before the index had checksums wrote them (and its settings' version 1):
    // the resume computes the checksums of their shards
    const state = join(out, '.prepare');
    for (const name of readdirSync(state).filter((n) => /^shard-\d{5}\.json$/.test(n))) {
      const m = JSON.parse(readFileSync(join(state, name), 'utf8')) as { crc32?: number[] };
      expect(m.crc32!.length).toBeGreaterThan(0);
      delete m.crc32;
      writeFileSync(join(state, name), JSON.stringify(m));
    }
    const settings = JSON.parse(readFileSync(join(state, 'settings.json'), 'utf8')) as { version: number };
    writeFileSync(join(state, 'settings.json'), JSON.stringify({ ...settings, version: 1 }));
    const events: PrepareEvent[] = [];
    const second = await prepareShards({ data: src, out, shortSide: 20, shardBytes: 1500, onEvent: (e) => events.push(e) });
    expect(events[0]).toMatchObject({ type: 'start', files: 11, shards: first.shards });
    expect((events[0] as { done: number }).done).toBeGreaterThanOrEqual(5);
    expect(second).toMatchObject({ complete: true, samples: 9 });
    expect(second.skipped.map((s) => s.source)).toEqual(BAD);
    expect(readdirSync(out).filter((n) => n.startsWith('.'))).toEqual([]);
    expect(await contents(await ShardDataset.open(out))).toEqual(whole);
    expect((await readShardIndex(out)).crc32).toEqual((await readShardIndex(join(root, 'whole'))).crc32);
    // done: the same call again is a no-op (for a folder of version 1 too), other settings or another folder are refused
    expect(await prepareShards({ data: src, out, shortSide: 20 })).toMatchObject({ complete: true, samples: 9, shards: second.shards });
    const v2 = readFileSync(join(out, SHARD_INDEX_FILE), 'utf8');
    writeFileSync(join(out, SHARD_INDEX_FILE), JSON.stringify({ ...JSON.parse(v2), version: 1, crc32: undefined }));
    expect(await prepareShards({ data: src, out, shortSide: 20 })).toMatchObject({ complete: true, samples: 9, shards: second.shards });
    writeFileSync(join(out, SHARD_INDEX_FILE), v2);
    await expect(prepareShards({ data: src, out, shortSide: 32 })).rejects.toThrow(`${out} already holds prepared shards of other settings: shortSide 20 (now 32)`);
    const other = join(root, 'other-classes');
    mkdirSync(join(other, 'zebra'), { recursive: true });
    await writeImage(join(other, 'zebra', 'z.png'), 8, 8, 1);
    await expect(prepareShards({ data: other, out, shortSide: 20 })).rejects.toThrow(`${out} already holds prepared shards of other settings: the class folders`);
  });

  it('refuses another image folder (same file names) for a finished or an unfinished preparation, and resumes from the same one', async () => {
    const a = join(root, 'same-names-a');
    const b = join(root, 'same-names-b');
    for (const [dir, seed] of [[a, 1], [b, 50]] as const) {
      for (const cls of ['cat', 'dog']) {
        mkdirSync(join(dir, cls), { recursive: true });
        for (let k = 0; k < 3; k++) await writeImage(join(dir, cls, `${k}.png`), 6, 6, seed + k);
      }
    }
    // unfinished: started from a, continued from b
    const out = join(root, 'same-names-out');
    const abort = new AbortController();
    const first = await prepareShards({ data: a, out, shardBytes: 1, signal: abort.signal, onEvent: (e) => e.type === 'progress' && e.done === 3 && abort.abort() });
    expect(first).toMatchObject({ complete: false });
    await expect(prepareShards({ data: b, out, shardBytes: 1 })).rejects.toThrow(`${out} holds an unfinished preparation with other settings: the image folder ${a} (now ${b})`);
    const done = await prepareShards({ data: a, out, shardBytes: 1 });
    expect(done).toMatchObject({ complete: true, samples: 6 });
    const whole = await contents(await ShardDataset.open((await prepareShards({ data: a, out: join(root, 'same-names-whole'), shardBytes: 1 })).dir));
    expect(await contents(await ShardDataset.open(out))).toEqual(whole);
    // finished: the same folder again is a no-op, the other one is refused
    expect(await prepareShards({ data: a, out, shardBytes: 1 })).toMatchObject({ complete: true, samples: 6 });
    await expect(prepareShards({ data: b, out, shardBytes: 1 })).rejects.toThrow(`${out} already holds prepared shards of other settings: the image folder ${a} (now ${b})`);
    expect((await readShardIndex(out)).root).toBe(a);
    // a preparation started before the folder was recorded (no source in its settings) continues
    const older = join(root, 'same-names-older');
    const stop = new AbortController();
    await prepareShards({ data: a, out: older, shardBytes: 1, signal: stop.signal, onEvent: (e) => e.type === 'progress' && e.done === 3 && stop.abort() });
    const settingsPath = join(older, '.prepare', 'settings.json');
    const { source, ...rest } = JSON.parse(readFileSync(settingsPath, 'utf8')) as Record<string, unknown>;
    expect(source).toBe(a);
    writeFileSync(settingsPath, JSON.stringify(rest));
    expect(await prepareShards({ data: a, out: older, shardBytes: 1 })).toMatchObject({ complete: true, samples: 6 });
    expect(await contents(await ShardDataset.open(older))).toEqual(whole);
  });

  it('refuses a source folder changed under an unfinished preparation, a foreign output folder and bad options', async () => {
    const data = join(root, 'changing');
    mkdirSync(join(data, 'a'), { recursive: true });
    for (let k = 0; k < 4; k++) await writeImage(join(data, 'a', `${k}.png`), 8, 8, k);
    const out = join(root, 'changing-out');
    const abort = new AbortController();
    await prepareShards({ data, out, shardBytes: 1, signal: abort.signal, onEvent: (e) => e.type === 'progress' && e.done === 2 && abort.abort() });
    rmSync(join(data, 'a', '0.png'));
    await expect(prepareShards({ data, out, shardBytes: 1 })).rejects.toThrow(`${data} changed since the preparation in ${out} started: file 0 is a/1.png, was a/0.png`);
    const foreign = join(root, 'foreign');
    mkdirSync(foreign);
    writeFileSync(join(foreign, 'notes.txt'), 'mine');
    await expect(prepareShards({ data, out: foreign })).rejects.toThrow(`${foreign} is not empty and holds no shards (notes.txt); choose a new or empty output folder`);
    const file = join(root, 'a-file');
    writeFileSync(file, 'mine');
    await expect(prepareShards({ data, out: file })).rejects.toThrow(`${file} is a file, not a folder; choose a new or empty output folder`);
    // under a file: named (it was readdir's ENOTDIR)
    await expect(prepareShards({ data, out: join(file, 'x') })).rejects.toThrow(`prepareShards: the output folder ${join(file, 'x')} cannot be made: ${file} is not a folder`);
    expect(readFileSync(file, 'utf8')).toBe('mine');
    await expect(prepareShards({ data, out: join(data, 'shards') })).rejects.toThrow(`prepareShards: the output folder ${join(data, 'shards')} must not be inside the image folder ${data}`);
    await expect(prepareShards({ data, out: join(root, 'x'), format: 'png' as 'raw' })).rejects.toThrow("prepareShards: format must be 'raw' or 'jpeg', got png");
    await expect(prepareShards({ data, out: join(root, 'x'), quality: 0 })).rejects.toThrow('prepareShards: quality must be an integer in [1, 100], got 0');
    await expect(prepareShards({ data, out: join(root, 'x'), shortSide: 0 })).rejects.toThrow('prepareShards: shortSide must be an integer in [1, 65535] or null, got 0');
    const allBad = join(root, 'all-bad');
    mkdirSync(allBad);
    writeFileSync(join(allBad, 'z.png'), 'junk');
    await expect(prepareShards({ data: allBad, out: join(root, 'all-bad-out') })).rejects.toThrow(`${allBad}: none of its 1 image files could be decoded`);
  });
});


describe('mae prepare-data', () => {
  const cli = new URL('../../dist/lib/cli.js', import.meta.url).pathname;
  const many = join(root, 'many'); // 120 images in 3 classes: long enough a run to interrupt

  /** Runs the compiled CLI; with `signal`, sends it once the third shard is done. */
  function run(out: string, signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null; out: string }> {
    return new Promise((done, fail) => {
      const child = spawn(process.execPath, [cli, 'prepare-data', '--data', many, '--out', out, '--short-side', '40', '--shard-size', '0.01'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let text = '';
      child.stdout.on('data', (d: Buffer) => (text += d.toString()));
      child.stderr.on('data', (d: Buffer) => (text += d.toString()));
      const poll = signal && setInterval(() => {
        if (existsSync(join(out, '.prepare', 'shard-00002.json'))) {
          child.kill(signal);
          clearInterval(poll);
        }
      }, 5);
      child.on('error', fail);
      child.on('close', (code, sig) => {
        if (poll) clearInterval(poll);
        done({ code, signal: sig, out: text });
      });
    });
  }

  it('stops at Ctrl-C after finishing its shard, survives SIGKILL, and resumes both times to the result of one run', async () => {
    expect(existsSync(cli), `${cli} is missing: run npm run build first`).toBe(true);
    for (let k = 0; k < 120; k++) {
      const dir = join(many, `c${k % 3}`);
      mkdirSync(dir, { recursive: true });
      await writeImage(join(dir, `${k}.png`), 48, 56, k);
    }
    const whole = await contents(await ShardDataset.open((await prepareShards({ data: many, out: join(root, 'many-whole'), shortSide: 40, shardBytes: Math.round(0.01 * 2 ** 20) })).dir));

    const interrupted = join(root, 'many-int');
    const a = await run(interrupted, 'SIGINT');
    expect(a.out).toContain('interrupted: finishing the current shard');
    expect(a.out).toContain('not finished: run the same command again to resume');
    expect(a.code).toBe(130); // 128 + SIGINT: not finished
    expect(existsSync(join(interrupted, SHARD_INDEX_FILE))).toBe(false);
    const b = await run(interrupted);
    expect(b.out).toMatch(/preparing 120 image files .* \(resuming after \d+ files in \d+ shards\)/);
    expect(b.out).toMatch(/done: 120 images in \d+ shards/);
    expect(b.code).toBe(0);
    expect(await contents(await ShardDataset.open(interrupted))).toEqual(whole);

    const killed = join(root, 'many-kill');
    const c = await run(killed, 'SIGKILL');
    expect(c.signal).toBe('SIGKILL');
    expect(existsSync(join(killed, SHARD_INDEX_FILE))).toBe(false);
    const d = await run(killed);
    expect(d.out).toMatch(/resuming after \d+ files/);
    expect(d.code).toBe(0);
    expect(await contents(await ShardDataset.open(killed))).toEqual(whole);
    expect(readdirSync(killed).filter((n) => n.startsWith('.'))).toEqual([]);
  });

  it('names missing flags and bad values', async () => {
    const { spawnSync } = await import('node:child_process');
    const mae = (args: string[]) => spawnSync(process.execPath, [cli, 'prepare-data', ...args], { encoding: 'utf8' });
    expect(mae(['--data', many]).stderr).toContain('prepare-data: --data FOLDER and --out DIR are required');
    expect(mae(['--data', many, '--out', join(root, 'z'), '--format', 'png']).stderr).toContain("--format must be raw or jpeg, got 'png'");
    expect(mae(['--data', many, '--out', join(root, 'z'), '--short-side', 'big']).status).toBe(2);
    expect(mae(['--data', many, '--out', join(root, 'z'), '--channels', '4'])).toMatchObject({ status: 2, stdout: '', stderr: "mae prepare-data: --channels must be 1 or 3, got '4'\n" });
    // values the library refuses are refused with the flag's name and range (0 keeps every size), before any work
    for (const [args, err] of [
      [['--short-side=-1'], '--short-side must be an integer from 0 (every size kept) to 65535, got -1'],
      [['--short-side', '1.5'], '--short-side must be an integer from 0 (every size kept) to 65535, got 1.5'],
      [['--shard-size', '0.0000001'], '--shard-size must be a positive number of MiB (a byte at least), got 1e-7'],
      // --quality is for JPEG: with raw shards (the default) it would be ignored
      [['--quality', '50'], '--quality applies to --format jpeg (raw shards keep the decoded pixels)'],
    ] as const) {
      const r = mae(['--data', many, '--out', join(root, 'z'), ...args]);
      expect([r.status, r.stdout, r.stderr]).toEqual([2, '', `mae prepare-data: ${err}\n`]);
    }
    expect(mae(['--data', many, '--out', join(root, 'z'), '--format', 'jpeg', '--quality', '0']).stderr).toBe('mae prepare-data: --quality must be an integer in [1, 100], got 0\n');
    expect(existsSync(join(root, 'z'))).toBe(false);
    expect(mae(['--help']).stdout).toContain('--short-side N (256)');
    expect(mae(['--help']).stdout).toContain('--channels 1|3 (3)');
  });

  it('--channels 1 writes greyscale shards that a one-channel model trains from', async () => {
    const { spawnSync } = await import('node:child_process');
    const out = join(root, 'grey');
    const p = spawnSync(process.execPath, [cli, 'prepare-data', '--data', src, '--out', out, '--channels', '1', '--short-side', '16'], { encoding: 'utf8' });
    expect(p.status, p.stderr).toBe(0);
    const index = await readShardIndex(out);
    expect([index.channels, index.count]).toEqual([1, 9]);
    const ds = await ShardDataset.open(out);
    for (let i = 0; i < ds.length; i++) {
      const s = await ds.getPixels(i);
      expect(s.pixels.length).toBe(s.height * s.width);
    }
    // the 28-px preset takes one channel: it trains from these (3-channel shards are refused: 'the data has 3 channels')
    const run = spawnSync(process.execPath, [cli, 'pretrain', '--preset', 'mae_vit_tiny_patch4_28', '--data', out, '--batch-size', '4', '--max-steps', '2', '--out', join(root, 'grey-run')], { encoding: 'utf8' });
    expect(run.status, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/finished after 2 steps/);
  });
});
