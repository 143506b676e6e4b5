// The `mae` command as a user runs it: the compiled CLI (dist/, made by `npm run build`) in a child process.
// `mae pretrain` with no data flags is the built-in default job (Fashion-MNIST), here cut to a few steps.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { HELP, errorLine } from '../lib/cli.js';
import { native } from '../lib/native.js';
import { hasCpuFlag } from './helpers/cpu.js';
import { endedPid } from './helpers/processes.js';

const cli = new URL('../dist/lib/cli.js', import.meta.url).pathname;

function mae(args: string[], env: NodeJS.ProcessEnv = process.env): { code: number; out: string; err: string } {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 300_000, env });
  return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
}

/** `mae args` started as a child process: its output so far (stdout and stderr as they come) and its exit status. */
function startMae(args: string[]): { child: ChildProcess; text: () => string; closed: Promise<number | null> } {
  const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let text = '';
  child.stdout!.on('data', (d: Buffer) => (text += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (text += d.toString()));
  const closed = new Promise<number | null>((done) => child.on('close', (code) => done(code)));
  return { child, text: () => text, closed };
}

describe('mae command', () => {
  it('is built (npm run build compiles dist/), as a program: the quick start runs it by name (npx mae)', () => {
    expect(existsSync(cli), `${cli} is missing: run npm run build first`).toBe(true);
    expect(statSync(cli).mode & 0o111, 'dist/lib/cli.js is not executable (npm run build:ts sets its mode)').toBe(0o111);
    const r = spawnSync(cli, ['--help'], { encoding: 'utf8' });
    expect([r.error?.message, r.status]).toEqual([undefined, 0]);
  });

  it('mae info names the version, backend and BLAS', () => {
    const r = mae(['info']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/masked-autoencoder\s+\d+\.\d+\.\d+/);
    expect(r.out).toMatch(/backends\s+cpu/);
    expect(r.out).toMatch(/blas\s+OpenBLAS/);
  });

  it("mae info says where bf16 products run, and why not natively where oneDNN is limited or missing", () => {
    const { ONEDNN_MAX_CPU_ISA: _o, DNNL_MAX_CPU_ISA: _d, ...clean } = process.env;
    const row = (env: NodeJS.ProcessEnv) => mae(['info'], env).out.split('\n').find((l) => l.startsWith('onednn'));
    expect(row({ ...clean, MAE_DNNL_LIB: '/nonexistent/libdnnl.so.2' })).toMatch(/^onednn\s+unavailable \(.*\/nonexistent\/libdnnl\.so\.2.*\): bf16 products run on the BLAS/);
    expect(row({ ...clean, ONEDNN_MAX_CPU_ISA: 'AVX2' })).toMatch(
      /isa avx2, bf16 products on the BLAS \(widened copies: about fp32's speed\): ONEDNN_MAX_CPU_ISA=AVX2 limits oneDNN 2\.\d+\.\d+ to avx2, where it has no bf16 kernel$/,
    );
    expect(row(clean)).toMatch(/isa \S+, bf16 products (native \((AMX|AVX512-BF16)|on the BLAS)/);
  });

  it('mae info says whether the AVX-512 kernels run: on where the CPU has them, off with MAE_CPU_AVX512=off (with bf16 rounding and attention off them too)', () => {
    const { MAE_CPU_AVX512: _a, MAE_ADDON: _b, ...clean } = process.env;
    const rows = (env: NodeJS.ProcessEnv) => Object.fromEntries(mae(['info'], env).out.split('\n').map((l) => [l.slice(0, 20).trim(), l.slice(21)]));
    const avx512 = ['avx512f', 'avx512bw', 'avx512vl', 'avx512dq'].every(hasCpuFlag);
    expect(rows(clean)['avx-512 kernels']).toBe(avx512 ? 'on' : 'none: the CPU lacks AVX-512 F, BW, VL or DQ');
    const off = rows({ ...clean, MAE_CPU_AVX512: 'off' });
    expect(off['avx-512 kernels']).toBe(avx512 ? 'off (MAE_CPU_AVX512=off)' : 'none: the CPU lacks AVX-512 F, BW, VL or DQ');
    expect(off['bf16 rounding']).toBe('integer round-to-nearest-even');
    expect(off['bf16 attention']).not.toMatch(/fused/);
  });

  it('mae info says how idle threads wait: a 0.3 ms spin by default, the user\'s OpenMP setting when given', () => {
    const { OMP_WAIT_POLICY: _p, GOMP_SPINCOUNT: _s, ...clean } = process.env;
    expect(mae(['info'], clean).out).toMatch(/threads\s+\d+ \(OpenMP;.*idle wait: GOMP_SPINCOUNT=30000\)/);
    const passive = mae(['info'], { ...clean, OMP_WAIT_POLICY: 'passive' }).out;
    expect(passive).toMatch(/idle wait: OMP_WAIT_POLICY=passive\)/);
    expect(passive).not.toMatch(/GOMP_SPINCOUNT/);
  });

  it('mae pretrain runs the default job (reduced), then mae visualize writes a PNG', () => {
    const out = mkdtempSync(join(tmpdir(), 'mae-cli-'));
    const r = mae(['pretrain', '--limit', '256', '--epochs', '1', '--batch-size', '32', '--out', out]);
    expect(r.err + r.out).toMatch(/finished after 8 steps/);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/ in fp32 on 256 images/);
    // the bf16 tip under the first line exactly where this CPU's bf16 products are native
    const tip = /^  tip: this CPU runs bf16 matrix products natively \(oneDNN [\d.]+, \w+\): --precision bf16 trains faster/m;
    if (native.info().dnnl.bf16Products) expect(r.out.split('\n')[1]).toMatch(tip);
    else expect(r.out).not.toMatch(/tip:/);
    // no tip in bf16, nor where oneDNN is kept from its bf16 kernels
    const short = ['pretrain', '--limit', '64', '--epochs', '1', '--batch-size', '32', '--max-steps', '1'];
    const bf16 = mae([...short, '--precision', 'bf16', '--out', join(out, 'bf16')]);
    expect(bf16.out).toMatch(/ in bf16 on 64 images/);
    expect(bf16.out).not.toMatch(/tip:/);
    const limited = mae([...short, '--out', join(out, 'avx2')], { ...process.env, ONEDNN_MAX_CPU_ISA: 'AVX2' });
    expect(limited.out).toMatch(/ in fp32 on 64 images/);
    expect(limited.out).not.toMatch(/tip:/);
    const png = join(out, 'reconstructions', 'epoch-001.png');
    expect(existsSync(png)).toBe(true);
    // the first epoch is epoch 1 in every line, as in the figure's name
    expect(r.out).toMatch(/^epoch 1 done: mean loss \d+\.\d{4}, [\d.]+ s, waited [\d.]+ s for data\nreconstructions: .*epoch-001\.png\n/m);
    expect(readFileSync(png).subarray(1, 4).toString()).toBe('PNG');
    const log = readFileSync(join(out, 'log.jsonl'), 'utf8').trim().split('\n');
    expect(JSON.parse(log[log.length - 1]!).step).toBe(8);

    const v = mae(['visualize', '--checkpoint', out, '--count', '3', '--out', join(out, 'v.png')]);
    expect(v.err).toBe('');
    expect(v.code).toBe(0);
    expect(existsSync(join(out, 'v.png'))).toBe(true);
    // an --out that is the run's checkpoint is refused: the figure would replace it
    const ck = join(out, 'checkpoint.safetensors');
    expect(mae(['visualize', '--checkpoint', out, '--out', ck])).toEqual({ code: 1, out: '', err: `mae visualize: --out ${ck}: is the checkpoint's weights file (--checkpoint ${out}), which writing would replace; give another path\n` });
    // --limit cuts the data the figure draws from
    const cut = mae(['visualize', '--checkpoint', out, '--limit', '5', '--start', '4', '--count', '2', '--out', join(out, 'w.png')]);
    expect(cut).toEqual({ code: 0, out: `wrote ${join(out, 'w.png')} (1 of the 2 images --count asks for: the data has 5, drawn from index 4)\n`, err: '' });
    expect(mae(['visualize', '--checkpoint', out, '--limit', '5', '--start', '5', '--out', join(out, 'w.png')]).err).toMatch(/no images at index 5 of a dataset of 5/);
  });

  it('mae pretrain: SIGTERM stops with a checkpoint and status 143; --resume alone continues with the run\'s options', async () => {
    const out = mkdtempSync(join(tmpdir(), 'mae-cli-term-'));
    const run = ['--data-kind', 'synthetic', '--limit', '512', '--epochs', '3', '--batch-size', '16', '--embed-dim', '32', '--depth', '2', '--num-heads', '2',
      '--decoder-embed-dim', '16', '--decoder-depth', '1', '--decoder-num-heads', '2', '--log-every', '1', '--visualize-every', '0', '--threads', '1', '--out', out];
    const { child, text: output, closed } = startMae(['pretrain', ...run]);
    while (!existsSync(join(out, 'log.jsonl'))) await sleep(5); // the first step is logged
    child.kill('SIGTERM');
    expect(await closed, output()).toBe(143);
    const text = output();
    expect(text).toContain('SIGTERM: finishing the current step and writing a checkpoint');
    expect(existsSync(join(out, 'checkpoint.safetensors'))).toBe(true);
    // a fresh run may not replace it; --resume with no other flag takes the options from the checkpoint
    const again = mae(['pretrain', ...run]);
    expect(again.code).toBe(1);
    expect(again.err).toMatch(/holds a run already \(checkpoint.safetensors\): resume it \(--resume\)/);
    const resumed = mae(['pretrain', '--resume', '--threads', '1', '--out', out]);
    expect(resumed.err).toBe('');
    expect(resumed.code).toBe(0);
    expect(resumed.out).toMatch(/on 512 images: 96 steps .*\(resumed at step \d+\)/);
    expect(resumed.out).toMatch(/finished after 96 steps/);
    const done = mae(['pretrain', '--resume', '--threads', '1', '--out', out]);
    expect(done.code).toBe(0);
    expect(done.out).toMatch(/finished after 96 steps in \S+, no step left to take/);
  });

  /**
   * A pretraining run with steps long enough (about 0.3 s on one thread) that a second signal comes while the first
   * step still runs: `first` once the run has begun, then `second` once, as soon as the first one's line is printed.
   */
  async function signalTwice(first: NodeJS.Signals, second: NodeJS.Signals): Promise<{ status: [number | null, string | null]; text: string; out: string; sent: boolean }> {
    const out = mkdtempSync(join(tmpdir(), 'mae-cli-signals-'));
    const { child, text, closed } = startMae(['pretrain', '--data-kind', 'synthetic', '--limit', '512', '--epochs', '3', '--batch-size', '64', '--embed-dim', '192', '--depth', '4',
      '--num-heads', '3', '--decoder-embed-dim', '64', '--decoder-depth', '1', '--decoder-num-heads', '2', '--log-every', '1', '--visualize-every', '0', '--threads', '1', '--out', out]);
    let sent = false;
    // (after startMae's own listener: text() holds the chunk)
    child.stdout!.on('data', () => {
      if (!sent && text().includes(`${first}: finishing the current step`)) {
        sent = true;
        child.kill(second);
      }
    });
    while (!existsSync(join(out, 'log.jsonl'))) await sleep(5);
    child.kill(first);
    const code = await closed;
    return { status: [code, child.signalCode], text: text(), out, sent };
  }

  it('mae pretrain: a second SIGUSR1 while the run stops is ignored (it ended the process before the checkpoint)', async () => {
    const { status, text, out, sent } = await signalTwice('SIGUSR1', 'SIGUSR1');
    expect(status, text).toEqual([138, null]);
    expect(sent).toBe(true);
    expect(text).toContain(`checkpoint: ${join(out, 'checkpoint.safetensors')}`);
    expect(existsSync(join(out, 'checkpoint.safetensors'))).toBe(true);
  });

  it('mae pretrain: Ctrl-C after a SIGTERM quits at once, as a second SIGTERM does (it asked for the same stop again)', async () => {
    const { status, text, sent } = await signalTwice('SIGTERM', 'SIGINT');
    expect(status, text).toEqual([130, null]);
    expect(sent).toBe(true);
    expect(text).toContain('SIGTERM: finishing the current step and writing a checkpoint (SIGTERM again to quit at once)');
    // quit before the step's end: no stop checkpoint, no closing summary
    expect(text).not.toMatch(/stopped after|checkpoint: /);
  });

  it('an unknown flag is a usage error that suggests the flag it most likely misspells', () => {
    expect(mae(['pretrain', '--epoch', '3'])).toEqual({ code: 2, out: '', err: 'mae pretrain: unknown flag --epoch (did you mean --epochs?); --help lists the flags\n' });
    expect(mae(['finetune', '--batch_size', '8'])).toEqual({ code: 2, out: '', err: 'mae finetune: unknown flag --batch_size (did you mean --batch-size?); --help lists the flags\n' });
    expect(mae(['verify-data', '--decoded'])).toEqual({ code: 2, out: '', err: 'mae verify-data: unknown flag --decoded (did you mean --decode?); --help lists the flags\n' });
    expect(mae(['prepare-data', '--qualityy=3'])).toEqual({ code: 2, out: '', err: 'mae prepare-data: unknown flag --qualityy (did you mean --quality?); --help lists the flags\n' });
    expect(mae(['eval', '--zzzz'])).toEqual({ code: 2, out: '', err: 'mae eval: unknown flag --zzzz; --help lists the flags\n' });
  });

  it('mae linprobe takes --limit alone as a cut of its default data', () => {
    const out = mkdtempSync(join(tmpdir(), 'mae-lp-limit-'));
    const r = mae(['linprobe', '--raw-pixels', '--limit', '300', '--epochs', '1', '--out', out]);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/features: train 300 x 784/);
    expect(r.out).toMatch(/features: test 10000 x 784/);
    const bad = mae(['linprobe', '--raw-pixels', '--on-bad-file', 'skip', '--out', out]);
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/--on-bad-file needs --data/);
  });

  it('gives usage errors for bad flags and bad data', () => {
    const a = mae(['pretrain', '--epochs', 'many']);
    expect(a.code).toBe(2);
    expect(a.err).toMatch(/--epochs must be a number/);
    const b = mae(['pretrain', '--data', '/no/such/folder']);
    expect(b.code).toBe(2);
    expect(b.err).toMatch(/no such file or folder/);
    const c = mae(['pretrain', '--frobnicate']);
    expect(c.code).toBe(2);
    expect(c.err).toMatch(/frobnicate/);
    const d = mae(['visualize']);
    expect(d.code).toBe(2);
    expect(d.err).toMatch(/--checkpoint PATH is required/);
    const e = mae(['linprobe', '--raw-pixels', '--blr-sweep', '0.1,,1']);
    expect(e.code).toBe(2);
    expect(e.err).toMatch(/--blr-sweep must be a number, got ''/);
    const f = mae(['pretrain', '--distributed', 'nccl']);
    expect(f.code).toBe(2);
    expect(f.err).toMatch(/--distributed must be auto, mpi or none, got 'nccl'/);
    expect(mae(['pretrain', '--dist-timeout', '0']).err).toMatch(/--dist-timeout must be a positive number of seconds/);
    // past the library's limit: its message, named by the flag
    expect(mae(['pretrain', '--dist-timeout', '2e9']).err).toBe('mae pretrain: --dist-timeout must be a positive number of seconds, at most 1e9 (about 31 years), got the number 2000000000\n');
    expect(mae(['nope']).code).toBe(2);
    // no command: the usage, on stderr, as a usage error; asked for, on stdout
    const none = mae([]);
    expect(none).toEqual({ code: 2, out: '', err: expect.stringMatching(/^usage: mae <pretrain\|visualize\|.*> \[flags\]; mae <command> --help\n$/) });
    // asked for: the usage line, then every command with what it does, each once
    const help = mae(['--help']);
    expect(help).toMatchObject({ code: 0, err: '' });
    expect(help.out.startsWith(none.err)).toBe(true);
    expect(help.out.match(/^  [a-z-]+  +\S.*$/gm)!.map((l) => l.trim().split(' ')[0])).toEqual(Object.keys(HELP));
    expect(mae(['-h']).out).toBe(help.out);
    const version = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
    expect(mae(['--version'])).toEqual({ code: 0, out: `${version}\n`, err: '' });
    expect(mae(['-v'])).toEqual({ code: 0, out: `${version}\n`, err: '' });
    // an unknown command's --help is the same error, on stderr (not a help text on stdout)
    expect(mae(['nope', '--help'])).toEqual({ code: 2, out: '', err: mae(['nope']).err });
    expect(mae(['constructor', '--help'])).toEqual({ code: 2, out: '', err: mae(['constructor']).err });
    expect(mae(['nope']).err).toMatch(/^mae: unknown command 'nope'; commands: pretrain, /);
    const hex = mae(['pretrain', '--epochs', '0x10']);
    expect(hex.code).toBe(2);
    expect(hex.err).toMatch(/--epochs must be a number, got '0x10'/);
    const knn = mae(['eval', '--checkpoint', '/no/such', '--k', '5', '--temperature', '0.1']);
    expect(knn.code).toBe(2);
    expect(knn.err).toMatch(/eval: --k, --temperature apply only with --knn/);
    expect(mae(['pretrain', '--data-kind', 'synthetic', '--data', '/no/such']).err).toMatch(/--data is not read with --data-kind synthetic/);
    expect(mae(['pretrain', '--data-kind', 'fashion-mnist', '--on-bad-file', 'stop']).err).toMatch(/--on-bad-file applies to image folders \(--data-kind folder\), not to fashion-mnist data/);
    // --limit out of range and a kind of data read from files without its path: usage errors, and no --out made
    const nothing = join(mkdtempSync(join(tmpdir(), 'mae-cli-usage-')), 'out');
    expect(mae(['pretrain', '--limit', '0', '--out', nothing])).toEqual({ code: 2, out: '', err: 'mae pretrain: --limit must be a positive integer, got 0\n' });
    expect(mae(['finetune', '--from-scratch', '--limit', '2.5', '--out', nothing])).toEqual({ code: 2, out: '', err: 'mae finetune: --limit must be a positive integer, got 2.5\n' });
    expect(mae(['linprobe', '--raw-pixels', '--limit', '-3', '--out', nothing])).toEqual({ code: 2, out: '', err: 'mae linprobe: --limit must be a positive integer, got -3\n' });
    expect(mae(['pretrain', '--data-kind', 'cifar10', '--out', nothing])).toEqual({ code: 2, out: '', err: 'mae pretrain: --data-kind cifar10 needs --data PATH, the folder with data_batch_1.bin .. data_batch_5.bin and test_batch.bin\n' });
    expect(mae(['linprobe', '--raw-pixels', '--test-data-kind', 'shards', '--out', nothing])).toEqual({ code: 2, out: '', err: 'mae linprobe: --test-data-kind shards needs --test-data PATH, the folder written by mae prepare-data\n' });
    expect(existsSync(nothing)).toBe(false);
    expect(mae(['pretrain', '--resume', '--on-bad-file', 'skip']).err).toBe('mae pretrain: --on-bad-file with --resume needs --data: a resumed run takes its data, what to do with bad files included, from its checkpoint\n');
    // no flag takes an empty value: a path of '' was the current folder (--data, --test-data, prepare-data's), or
    // an --out that a training run failed to write to after training ("ENOENT: no such file or directory, stat ''")
    const tinyScratch = ['--from-scratch', '--data-kind', 'synthetic', '--limit', '32', '--epochs', '1', '--batch-size', '16', '--embed-dim', '32', '--depth', '1', '--num-heads', '2', '--threads', '1'];
    for (const [flag, args] of [
      ['--data', ['visualize', '--checkpoint', '/no/such', '--data-kind', 'folder', '--data', '']],
      ['--data', ['prepare-data', '--data=', '--out', 'x']],
      ['--out', ['finetune', ...tinyScratch, '--out', '']],
    ] as const)
      expect(mae([...args])).toEqual({ code: 2, out: '', err: `mae ${args[0]}: ${flag} is empty\n` });
    const i = mae(['info', '--bogus', '1']);
    expect(i.code).toBe(2);
    expect(i.err).toMatch(/bogus/);
  });

  it('mae prepare-data lists a sub-folder of 150,000 files (spread into one push() call, they overflowed the call stack)', () => {
    const root = mkdtempSync(join(tmpdir(), 'mae-cli-many-'));
    const dir = join(root, 'data', 'all', 'part');
    mkdirSync(dir, { recursive: true });
    for (let i = 0; i < 150_000; i++) writeFileSync(join(dir, `${i}.png`), ''); // empty: the first is a bad file
    const r = mae(['prepare-data', '--data', join(root, 'data'), '--out', join(root, 'shards'), '--on-bad-file', 'stop']);
    expect(r.code).toBe(1);
    expect(r.out).toContain(`preparing 150000 image files from ${join(root, 'data')}`);
    expect(r.err).toContain(`mae prepare-data: ${join(dir, '0.png')}: cannot decode image`);
    rmSync(root, { recursive: true, force: true });
  });

  it('prints a library error with the command once and the option as its flag', () => {
    const out = mkdtempSync(join(tmpdir(), 'mae-cli-error-'));
    const r = mae(['pretrain', '--mask-ratio', '1.5', '--out', out]);
    // a flag's value out of range is a usage error (status 2), also where the library found it
    expect(r.code).toBe(2);
    expect(r.err).toBe('mae pretrain: --mask-ratio must be in [0, 1), got 1.5\n');
    expect(mae(['linprobe', '--raw-pixels', '--epochs', '0', '--out', out]).err).toBe('mae linprobe: --epochs must be a positive integer, got 0\n');
    // options that reach the DataLoader, or an item of a list: checked and named by the command (they were the DataLoader's)
    expect(mae(['linprobe', '--raw-pixels', '--workers', '300', '--out', out])).toEqual({ code: 2, out: '', err: 'mae linprobe: --workers must be an integer in [0, 256], got the number 300\n' });
    expect(mae(['finetune', '--from-scratch', '--workers', '300', '--out', out])).toEqual({ code: 2, out: '', err: 'mae finetune: --workers must be an integer in [0, 256], got the number 300\n' });
    expect(mae(['linprobe', '--raw-pixels', '--blr-sweep', '0.1,0', '--out', out]).err).toBe('mae linprobe: --blr-sweep[1] must be a positive base lr, finite in float32 (at most 3.4e38), got the number 0\n');
    // the classifier's config, checked by the library: named by its flag, a usage error
    expect(mae(['finetune', '--from-scratch', '--data-kind', 'synthetic', '--depth', '0', '--out', join(out, 'ft')])).toEqual({ code: 2, out: '', err: 'mae finetune: --depth must be an integer >= 1, got the number 0\n' });
    // a count beyond 2^53 is refused before training, not after it, by the first checkpoint (whose metadata holds no such count)
    const huge = join(out, 'huge');
    for (const [flag, what] of [['--checkpoint-every', 'non-negative'], ['--log-every', 'positive'], ['--visualize-every', 'non-negative'], ['--knn-every', 'non-negative']] as const)
      expect(mae(['pretrain', '--data-kind', 'synthetic', '--limit', '64', '--batch-size', '32', '--max-steps', '1', '--threads', '1', flag, '1e300', '--out', huge])).toEqual({
        code: 2, out: '', err: `mae pretrain: ${flag} must be a ${what} integer, got 1e+300\n`,
      });
    expect(existsSync(huge)).toBe(false);
    // a seed is a non-negative integer for every command, refused before any work (linprobe took -1; finetune's 1.5
    // was refused by the Generator it reached, in its own name)
    expect(mae(['linprobe', '--raw-pixels', '--seed=-1', '--out', out]).err).toBe('mae linprobe: --seed must be a non-negative integer, got -1\n');
    expect(mae(['finetune', '--from-scratch', '--data-kind', 'synthetic', '--seed', '1.5', '--out', out]).err).toBe('mae finetune: --seed must be a non-negative integer, got 1.5\n');
    // linprobe flags that would not be used are refused, not ignored
    expect(mae(['linprobe', '--raw-pixels', '--blr-sweep', '0.1,1', '--blr', '0.5', '--out', out]).err).toBe('mae linprobe: blr and lr (--blr, --lr) do not apply with a base-lr sweep (blrSweep, --blr-sweep), which chooses the base lr\n');
    expect(mae(['linprobe', '--raw-pixels', '--pool', 'avg', '--out', out]).err).toBe('mae linprobe: pool (--pool) only applies to encoder features, not with rawPixels (--raw-pixels)\n');
    // --crop-scale-min is the low end of the crop scale [min, 1] (the DataLoader refused it as 'scale', after building the model)
    for (const bad of ['0', '1.5'])
      expect(mae(['finetune', '--from-scratch', '--data-kind', 'synthetic', '--crop-scale-min', bad, '--out', out])).toEqual({ code: 2, out: '', err: `mae finetune: --crop-scale-min must be in (0, 1], got ${bad}\n` });
    expect(mae(['visualize']).err).toBe('mae visualize: --checkpoint PATH is required (a checkpoint file or a run folder)\n');
    expect(errorLine('pretrain', 'pretrain: knn.every must be a non-negative integer, got 1.5', 3)).toBe('mae pretrain: [rank 3] --knn-every must be a non-negative integer, got 1.5');
    expect(errorLine('finetune', 'finetune: accumIter must be a positive integer, got 0')).toBe('mae finetune: --accum-iter must be a positive integer, got 0');
    // an option with no flag of that command, and an error from another part, read as the library wrote them
    expect(errorLine('pretrain', 'pretrain: outDir must be a string')).toBe('mae pretrain: outDir must be a string');
    expect(errorLine('embed', 'embed: accumIter must be 1')).toBe('mae embed: accumIter must be 1');
    // a full disk: how to go on (every file is written atomically, so what was written before is whole)
    const full = 'writeFileAtomic(/r/checkpoint.safetensors): write failed, target left unchanged: ENOSPC: no space left on device, write';
    expect(errorLine('pretrain', full)).toBe(`mae pretrain: ${full}; the disk is full (the files written before are whole): free some space, then continue the run from its last checkpoint with mae pretrain --resume --out DIR`);
    expect(errorLine('prepare-data', 'EDQUOT: disk quota exceeded')).toMatch(/the disk is full .*: free some space, then run the same command to continue after the last finished shard$/);
    expect(errorLine('embed', 'writeFileAtomic(/f.safetensors): write failed, target left unchanged: ENOSPC: no space left on device')).toMatch(/free some space, then run the command again$/);
    // the model's and kNN's options that a flag of the command sets are named by the flag; kept where no flag sets them
    expect(errorLine('eval', 'knnEvaluate: k must be a positive integer, got the number 0')).toBe('mae eval: --k must be a positive integer, got the number 0');
    expect(errorLine('pretrain', 'pretrain: knn.k must be a positive integer, got the number 0')).toBe('mae pretrain: knn.k must be a positive integer, got the number 0');
    expect(errorLine('pretrain', 'MaskedAutoencoder: depth must be a positive integer, got 0')).toBe('mae pretrain: --depth must be a positive integer, got 0');
    expect(errorLine('pretrain', 'MaskedAutoencoder: embedDim 7 is not divisible by numHeads 3')).toBe('mae pretrain: MaskedAutoencoder: embedDim 7 is not divisible by numHeads 3');
    expect(errorLine('finetune', 'VisionTransformerClassifier: config.depth must be an integer >= 1, got the number 0')).toBe('mae finetune: --depth must be an integer >= 1, got the number 0');
    expect(errorLine('finetune', 'classifierConfigFrom: config.depth must be an integer >= 1, got the number 0')).toBe('mae finetune: --depth must be an integer >= 1, got the number 0');
    expect(errorLine('classify', 'classifierConfigFrom: numHeads must be an integer >= 1, got the number 0')).toBe('mae classify: --num-heads must be an integer >= 1, got the number 0');
    // given the flags of the command line, only those are named: a value from a checkpoint is not blamed on a flag
    expect(errorLine('embed', 'MaskedAutoencoder: depth must be a positive integer, got 0', undefined, new Set(['checkpoint']))).toBe('mae embed: MaskedAutoencoder: depth must be a positive integer, got 0');
    expect(errorLine('pretrain', 'pretrain: maskRatio must be in [0, 1), got 2', undefined, new Set(['mask-ratio', 'out']))).toBe('mae pretrain: --mask-ratio must be in [0, 1), got 2');
    // embed and classify run the model through embedAsync / forwardAsync: the command is named, not the call
    expect(errorLine('embed', 'embedAsync: expected images [B, 3, H, W]')).toBe('mae embed: expected images [B, 3, H, W]');
    expect(errorLine('classify', 'forwardAsync: expected images [B, 3, 224, 224]')).toBe('mae classify: expected images [B, 3, 224, 224]');
    // the image loader's and the thread count's options are flags of embed, classify and eval (an item of a list too)
    expect(errorLine('embed', 'loadImages: size must be a positive integer, got 0')).toBe('mae embed: --size must be a positive integer, got 0');
    expect(errorLine('classify', 'loadImages: std[0] must be a finite number > 0, got the number 0')).toBe('mae classify: --std[0] must be a finite number > 0, got the number 0');
    expect(errorLine('embed', 'embedImages: batchSize must be an integer >= 1, got the number 0')).toBe('mae embed: --batch-size must be an integer >= 1, got the number 0');
    expect(errorLine('classify', 'classifyImages: topk must be an integer >= 1, got the number 0')).toBe('mae classify: --topk must be an integer >= 1, got the number 0');
    expect(errorLine('eval', 'setNumThreads: threads must be an integer in [1, 1024], got 0')).toBe('mae eval: --threads must be an integer in [1, 1024], got 0');
  });

  it('pretrainInWorker trains in a worker thread and reports events', async () => {
    const { pretrainInWorker } = (await import(new URL('../dist/lib/train/pretrain.js', import.meta.url).href)) as typeof import('../lib/train/pretrain.js');
    const out = mkdtempSync(join(tmpdir(), 'mae-worker-'));
    const types: string[] = [];
    const run = pretrainInWorker(
      {
        config: { embedDim: 32, depth: 1, numHeads: 2, decoderEmbedDim: 16, decoderDepth: 1, decoderNumHeads: 2 },
        data: { kind: 'synthetic', count: 64 },
        batchSize: 16,
        epochs: 1,
        outDir: out,
        workers: 0,
      },
      (e) => types.push(e.type),
    );
    const r = await run.result;
    expect(r.steps).toBe(4);
    expect(types[0]).toBe('start');
    expect(types.filter((t) => t === 'step')).toHaveLength(4);
    expect(existsSync(r.checkpoint)).toBe(true);
  });

  it('pretrainInWorker: an onEvent that throws ends the run with its error (not the process), its folder unlocked; options that are not plain data are named', () => {
    const out = mkdtempSync(join(tmpdir(), 'mae-worker-throw-'));
    const options = { config: { embedDim: 32, depth: 1, numHeads: 2, decoderEmbedDim: 16, decoderDepth: 1, decoderNumHeads: 2 }, data: { kind: 'synthetic', count: 64 }, batchSize: 16, epochs: 1, outDir: out, workers: 0 };
    const script = [
      `import { existsSync } from 'node:fs';`,
      `import { pretrainInWorker } from ${JSON.stringify(new URL('../dist/lib/train/pretrain.js', import.meta.url).pathname)};`,
      `const run = pretrainInWorker(${JSON.stringify(options)}, (e) => { if (e.type === 'step' && e.step === 2) throw new Error('handler threw at step 2'); });`,
      `await run.result.then(() => console.log('resolved'), (e) => console.log('rejected:', e.message));`,
      // the worker was stopped mid-run: the lock of its folder goes with it
      `console.log('lock left:', existsSync(${JSON.stringify(join(out, '.lock'))}));`,
      `try { pretrainInWorker({ ...${JSON.stringify(options)}, onEvent: () => {} }); } catch (e) { console.log('threw:', e.message); }`,
      `const { openDataset } = await import(${JSON.stringify(new URL('../dist/lib/train/data.js', import.meta.url).pathname)});`,
      `try { pretrainInWorker({ ...${JSON.stringify(options)}, data: await openDataset({ kind: 'synthetic', count: 4 }) }); } catch (e) { console.log('dataset:', e.message); }`,
    ].join('\n');
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 120_000 });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain('rejected: handler threw at step 2\nlock left: false');
    expect(r.stdout).toMatch(/threw: pretrainInWorker: the options must be plain data \(.*could not be cloned.*\); give onEvent as the second argument/);
    expect(r.stdout).toContain("dataset: pretrainInWorker: data must be a data source such as { kind: 'folder', path }");
  });

  it("pretrainInWorker: the run's error arrives with its name, message, code and the worker's stack", async () => {
    const { pretrainInWorker } = (await import(new URL('../dist/lib/train/pretrain.js', import.meta.url).href)) as typeof import('../lib/train/pretrain.js');
    const outDir = mkdtempSync(join(tmpdir(), 'mae-worker-error-'));
    mkdirSync(join(outDir, '.lock'));
    // an outDir whose lock is a folder: reading it fails (a Node.js system error, with a code)
    const run = pretrainInWorker({ data: { kind: 'synthetic', count: 16 }, batchSize: 16, epochs: 1, workers: 0, outDir });
    const e = (await run.result.catch((e: unknown) => e)) as NodeJS.ErrnoException;
    expect(e).toBeInstanceOf(Error);
    expect([e.name, e.code, e.message]).toEqual(['Error', 'EISDIR', 'EISDIR: illegal operation on a directory, read']);
    expect(e.stack).toMatch(/^Error: EISDIR: illegal operation on a directory, read\n(\s+at .*\n)*\s+at readLock .*dist\/lib\/classify\/checkpoint\.js.*\n(\s+at .*\n)*\s+at .*dist\/lib\/train\/worker\.js/);
    // an option of the wrong type: the worker's check names it (and the worker's end leaves no error behind)
    const typed = pretrainInWorker({ outDir: 5 as unknown as string }).result.catch((e: unknown) => e);
    expect(await typed).toMatchObject({ name: 'Error', message: 'pretrain: outDir must be a string, got the number 5', stack: expect.stringMatching(/\n\s+at expectOptions /) });
  });

  it('pretrainInWorker starts from a program whose Node flags a worker refuses (node --input-type=module -e)', () => {
    const out = mkdtempSync(join(tmpdir(), 'mae-worker-eval-'));
    const options = { config: { embedDim: 32, depth: 1, numHeads: 2, decoderEmbedDim: 16, decoderDepth: 1, decoderNumHeads: 2 }, data: { kind: 'synthetic', count: 32 }, batchSize: 16, epochs: 1, outDir: out, workers: 0 };
    const script = [
      `import { pretrainInWorker } from ${JSON.stringify(new URL('../dist/lib/train/pretrain.js', import.meta.url).pathname)};`,
      `const r = await pretrainInWorker(${JSON.stringify(options)}).result;`,
      'console.log(r.steps);',
    ].join('\n');
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 120_000 });
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('2');
  });

  it('mae bench --json on a tiny preset writes every row (both encoders per decoder depth) and --png a chart', () => {
    const out = mkdtempSync(join(tmpdir(), 'mae-bench-'));
    const json = join(out, 'bench.json');
    const png = join(out, 'bench.png');
    const r = mae(['bench', '--preset', 'mae_vit_tiny_patch4_28', '--decoder-depth', '2,1', '--batch-size', '4', '--steps', '2', '--threads', '1', '--json', json, '--png', png]);
    expect(r.err + r.out).toMatch(/wrote .*bench\.png/);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^model\s+decoder depth\s+encoder\s+batch\s+step ms\s+img\/s\s+speed-up\s+FLOP ratio\s+MFU\s+paper$/m);
    const j = JSON.parse(readFileSync(json, 'utf8'));
    expect(j.device).toBe('cpu');
    expect(j.precision).toBe('fp32');
    expect(j.machine.threads).toBe(1);
    expect(j.rows.map((x: { decoderDepth: number; encoder: string }) => `${x.encoder} ${x.decoderDepth}`)).toEqual(['mask-tokens 2', 'visible 2', 'mask-tokens 1', 'visible 1']);
    for (const x of j.rows) {
      expect(Object.keys(x).sort()).toEqual(['batch', 'decoderDepth', 'encoder', 'flopRatio', 'imgPerSec', 'mfu', 'model', 'paper', 'speedup', 'stepMs']);
      expect(x.model).toBe('mae_vit_tiny_patch4_28');
      expect(x.batch).toBe(4);
      for (const k of ['stepMs', 'imgPerSec', 'speedup', 'flopRatio', 'mfu']) expect(x[k] > 0 && Number.isFinite(x[k]), k).toBe(true);
      expect(x.paper).toBeNull();
    }
    const bytes = readFileSync(png);
    expect(bytes.subarray(1, 4).toString()).toBe('PNG');
  });

  it('mae bench names a preset, decoder depth or device that makes no sense, and --help lists its flags', () => {
    const a = mae(['bench', '--preset', 'vit_giant', '--device', 'cpu']);
    expect(a.code).toBe(1);
    expect(a.err).toMatch(/unknown preset 'vit_giant'; available: .*mae_vit_tiny_patch4_28/);
    const b = mae(['bench', '--decoder-depth', '8,x']);
    expect(b.code).toBe(2);
    expect(b.err).toMatch(/--decoder-depth must be a number, got 'x'/);
    // --precision is checked as every command checks it: a usage error
    expect(mae(['bench', '--precision', 'fp16'])).toEqual({ code: 2, out: '', err: "mae bench: --precision must be fp32 or bf16, got 'fp16'\n" });
    const c = mae(['bench', '--preset', 'mae_vit_tiny_patch4_28', '--decoder-depth', '0', '--device', 'cpu']);
    expect(c.err).toBe('mae bench: decoderDepths[0] must be a positive integer (a decoder depth, in blocks), got the number 0\n');
    const d = mae(['bench', '--device', 'cuda']);
    expect(d.code).toBe(1);
    expect(d.err).toMatch(/bench: device 'cuda' was asked for, but CUDA is not available/);
    const h = mae(['bench', '--help']);
    expect(h.code).toBe(0);
    for (const flag of ['--preset', '--decoder-depth', '--batch-size', '--steps', '--device', '--precision', '--threads', '--json', '--png']) expect(h.out).toContain(flag);
    expect(mae(['pretrain', '--help']).out).toContain('--mask-token-encoder');
  });

  it('each command\'s --help names every flag the command takes', async () => {
    const { COMMAND_FLAGS } = await import('../lib/cli.js');
    const unnamed: string[] = [];
    for (const [cmd, flags] of Object.entries(COMMAND_FLAGS))
      for (const flag of Object.keys(flags))
        if (flag !== 'help' && !new RegExp(`--${flag}(?![a-z-])`).test((HELP as Record<string, string>)[cmd] ?? '')) unnamed.push(`${cmd} --${flag}`);
    expect(unnamed).toEqual([]);
  });

  // root may write anywhere: the commands run as nobody there (setpriv), else as this user
  const asUser = process.getuid?.() === 0 ? (spawnSync('setpriv', ['--version']).status === 0 ? ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'] : null) : [];
  it.skipIf(asUser === null)('an --out that cannot be written (or made) is refused by name before any work, not as the error of a file in it', async () => {
    const root = mkdtempSync(join(tmpdir(), 'mae-cli-readonly-'));
    chmodSync(root, 0o755);
    const ro = join(root, 'ro');
    mkdirSync(ro, { mode: 0o555 });
    chmodSync(ro, 0o555);
    const run = (args: string[]) => {
      const r = spawnSync(asUser![0] ?? process.execPath, [...asUser!.slice(1), ...(asUser!.length ? [process.execPath] : []), cli, ...args], { encoding: 'utf8', timeout: 120_000 });
      return { code: r.status, out: r.stdout, err: r.stderr };
    };
    const tiny = ['--data-kind', 'synthetic', '--limit', '32', '--epochs', '1', '--batch-size', '16', '--threads', '1'];
    const notWritable = (cmd: string, out: string) => ({ code: 1, out: '', err: `mae ${cmd}: the output folder ${out} is not writable; choose another folder (--out)\n` });
    expect(run(['pretrain', ...tiny, '--embed-dim', '32', '--depth', '1', '--num-heads', '2', '--out', ro])).toEqual(notWritable('pretrain', ro));
    expect(run(['linprobe', '--raw-pixels', ...tiny, '--out', ro])).toEqual(notWritable('linprobe', ro));
    expect(run(['finetune', '--from-scratch', ...tiny, '--embed-dim', '32', '--depth', '1', '--num-heads', '2', '--out', join(ro, 'ft')])).toEqual({
      code: 1, out: '', err: `mae finetune: the output folder ${join(ro, 'ft')} cannot be made: ${ro} is not writable; choose another folder (--out)\n`,
    });
    const images = join(root, 'images');
    mkdirSync(images);
    const { writeImage } = await import('./helpers/images.js');
    await writeImage(join(images, 'a.png'), 8, 8, 1);
    expect(run(['prepare-data', '--data', images, '--out', join(ro, 'shards')])).toEqual({
      code: 1, out: '', err: `mae prepare-data: the output folder ${join(ro, 'shards')} cannot be made: ${ro} is not writable; choose another folder (--out)\n`,
    });
    expect(readdirSync(ro)).toEqual([]);
    rmSync(root, { recursive: true, force: true });
  });

  it('an --out that is a file, or under one, is refused by name before any work (linprobe made its features first)', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'mae-cli-out-file-')), 'a-file');
    writeFileSync(file, '');
    const tiny = ['--raw-pixels', '--data-kind', 'synthetic', '--limit', '32', '--epochs', '1', '--batch-size', '16', '--threads', '1'];
    expect(mae(['linprobe', ...tiny, '--out', file])).toEqual({ code: 1, out: '', err: `mae linprobe: the output folder ${file} is not a folder; choose another folder (--out)\n` });
    expect(mae(['linprobe', ...tiny, '--out', join(file, 'run')])).toEqual({
      code: 1, out: '', err: `mae linprobe: the output folder ${join(file, 'run')} cannot be made: ${file} is not a folder; choose another folder (--out)\n`,
    });
  });

  it("the training commands' --help give the defaults the library takes (warm-up, log and figure cadence, batch, limit)", async () => {
    // one line each, as printed: the help wraps its lines
    const flat = (cmd: string) => (HELP as Record<string, string>)[cmd]!.replace(/\s+/g, ' ');
    for (const text of ['--limit N (the first N images; all, the built-in run 10000)', '--epochs (10; the built-in run 4) --batch-size (64) --accum-iter (1)', '--min-lr (0) --warmup-epochs (epochs / 20 rounded up, at most 40; the built-in run 1)', '--checkpoint-every STEPS (0: only at each epoch end) --log-every STEPS (10', '--visualize-every EPOCHS (1:', '--knn-every EPOCHS (0: none;'])
      expect(flat('pretrain')).toContain(text);
    expect(flat('linprobe')).toContain('--warmup-epochs (10, at most a ninth of --epochs)');
    expect(flat('linprobe')).toContain('--eval-every EPOCHS (0: only at the end)');
    expect(flat('finetune')).toContain('--warmup-epochs (5, at most a tenth of --epochs)');
    expect(flat('finetune')).toContain('--eval-every EPOCHS (0: only at the end) --log-every STEPS (20)');
    expect(flat('finetune')).toContain('--resume (continue the unfinished run in --out from its checkpoint.safetensors, with its own options and settings;');
    expect(flat('finetune')).toContain('Ctrl-C or SIGTERM stops after the current step and exits with 130 (143 for SIGTERM), writing the checkpoint:');
  });
});

describe('mae pretrain --resume', () => {
  const tiny = ['--embed-dim', '32', '--depth', '2', '--num-heads', '2', '--decoder-embed-dim', '16', '--decoder-depth', '1', '--decoder-num-heads', '2'];
  const logSteps = (dir: string) => readFileSync(join(dir, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { step: number; loss: number });

  it("takes the run's --threads, --log-every, --checkpoint-every, --visualize-every and --workers; another --threads is said to change the result", async () => {
    const { readSafetensors } = await import('../lib/io/safetensors.js');
    const run = ['--data-kind', 'synthetic', '--limit', '64', '--batch-size', '8', '--epochs', '2', ...tiny, '--threads', '1', '--log-every', '1', '--checkpoint-every', '2', '--visualize-every', '0', '--workers', '0'];
    const ref = mkdtempSync(join(tmpdir(), 'mae-cli-settings-'));
    expect(mae(['pretrain', ...run, '--out', ref]).code).toBe(0);
    const out = mkdtempSync(join(tmpdir(), 'mae-cli-settings-'));
    expect(mae(['pretrain', ...run, '--max-steps', '5', '--out', out]).code).toBe(0);
    const meta = async (dir: string) => JSON.parse((await readSafetensors(join(dir, 'checkpoint.safetensors'))).metadata.mae!) as { position: { step: number }; options: Record<string, unknown> };
    expect((await meta(out)).options).toMatchObject({ threads: 1, logEvery: 1, checkpointEvery: 2, visualizeEvery: 0, workers: 0 });
    const resumed = mae(['pretrain', '--resume', '--out', out]);
    expect(resumed.err).toBe('');
    expect(resumed.code).toBe(0);
    expect(resumed.out).toMatch(/\(resumed at step 5\)\n/);
    expect(resumed.out).toContain('data in-process (workers: 0)');
    expect(logSteps(out)).toEqual(logSteps(ref).map((l) => ({ ...l, imgPerSec: expect.any(Number), gflopPerSec: expect.any(Number), stallMs: expect.any(Number), time: expect.any(String) })));
    expect((await import('node:fs')).readdirSync(join(out, 'reconstructions'))).toEqual(['epoch-002.png', 'step-000005.png']);
    const [a, b] = [await readSafetensors(join(ref, 'checkpoint.safetensors')), await readSafetensors(join(out, 'checkpoint.safetensors'))];
    const bytes = (t: { data: ArrayBufferView }) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    expect([...a.tensors].filter(([k, t]) => !bytes(t).equals(bytes(b.tensors.get(k)!))).map(([k]) => k)).toEqual([]);
    // and keeps them for the next resume
    expect((await meta(out)).options).toMatchObject({ threads: 1, logEvery: 1, checkpointEvery: 2, visualizeEvery: 0, workers: 0 });
    // another thread count: allowed, and said
    const other = mae(['pretrain', '--resume', '--threads', '2', '--out', out]);
    expect(other.code).toBe(0);
    expect(other.out).toContain("(resumed at step 16; 2 threads, not the run's 1: the result will not be bit-identical to the uninterrupted run's)");
  });

  it('compares --limit given with --resume with the limit of the run\'s data', async () => {
    const { pretrainOptions } = await import('../lib/cli.js');
    expect(pretrainOptions(['--resume', '--limit', '16', '--out', 'x'])).toEqual({ outDir: 'x', limit: 16, resume: true });
    const out = mkdtempSync(join(tmpdir(), 'mae-cli-limit-'));
    expect(mae(['pretrain', '--data-kind', 'synthetic', '--limit', '64', '--batch-size', '8', '--epochs', '2', ...tiny, '--max-steps', '3', '--threads', '1', '--out', out]).code).toBe(0);
    const other = mae(['pretrain', '--resume', '--limit', '16', '--out', out]);
    expect(other.code).toBe(1);
    expect(other.err).toBe("mae pretrain: resume: option limit differs from the checkpoint's (64 there, 16 here)\n");
    expect(logSteps(out).map((l) => l.step)).toEqual([3]);
    const same = mae(['pretrain', '--resume', '--limit', '64', '--max-steps', '4', '--out', out]);
    expect(same.err).toBe('');
    expect(same.code).toBe(0);
    expect(same.out).toMatch(/ on 64 images: 4 steps .*\(resumed at step 3\)\n/);
    expect(same.out).toMatch(/stopped after 4 steps|finished after 4 steps/);
  });
});

describe('mae bench output files', () => {
  it('refuses a --json or --png that cannot be written before benchmarking, naming the flag and path; makes a missing folder', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mae-bench-out-'));
    const file = join(dir, 'a-file');
    writeFileSync(file, 'x');
    const tiny = ['bench', '--preset', 'mae_vit_tiny_patch4_28', '--decoder-depth', '1', '--batch-size', '2', '--steps', '1', '--device', 'cpu', '--threads', '1'];
    const refused = (flags: string[], code: number, message: string) => {
      const r = mae([...tiny, ...flags]);
      expect([r.code, r.out, r.err]).toEqual([code, '', `mae bench: ${message}\n`]); // no table: nothing was timed
    };
    refused(['--json', dir], 1, `--json ${dir}: is a folder; give the path of the file to write`);
    refused(['--png', join(file, 'chart.png')], 1, `--png ${join(file, 'chart.png')}: cannot create the folder ${file}: a file of that name exists`);
    refused(['--json', ''], 2, '--json is empty');
    // a pipe (or a device such as /dev/null): the atomic write's rename would replace it with a regular file
    const fifo = join(dir, 'fifo');
    expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
    refused(['--json', fifo], 1, `--json ${fifo}: is not a regular file (a device, pipe or socket); give the path of the file to write`);
    expect(statSync(fifo).isFIFO()).toBe(true);
    refused(['--json', join(dir, 'r.json'), '--png', join(dir, 'r.json')], 2, `--json and --png name the same file, ${join(dir, 'r.json')}`);
    const json = join(dir, 'new', 'r.json');
    const png = join(dir, 'new', 'deeper', 'r.png');
    const r = mae([...tiny, '--json', json, '--png', png]);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain(`wrote ${json}\nwrote ${png}\n`);
    expect(JSON.parse(readFileSync(json, 'utf8')).rows).toHaveLength(2);
    expect(readFileSync(png).subarray(1, 4).toString()).toBe('PNG');
    rmSync(dir, { recursive: true, force: true });
  });
});

describe('mae eval: what is scored', () => {
  const root = mkdtempSync(join(tmpdir(), 'mae-cli-eval-'));
  const base = { imgSize: 28, patchSize: 7, inChans: 3, embedDim: 32, depth: 1, numHeads: 2, mlpRatio: 4, eps: 1e-6 };
  /** An image folder of `classes` class sub-folders of `per` 28 x 28 images each. */
  async function folder(name: string, classes: number, per: number): Promise<string> {
    const { writeImage } = await import('./helpers/images.js');
    const { mkdirSync } = await import('node:fs');
    const dir = join(root, name);
    for (let c = 0; c < classes; c++) {
      mkdirSync(join(dir, `c${c}`), { recursive: true });
      for (let i = 0; i < per; i++) await writeImage(join(dir, `c${c}`, `${i}.png`), 28, 28, 10 * c + i);
    }
    return dir;
  }
  /** A classifier folder (as finetune and linprobe write) of a randomly initialised model; `extra` is its metadata. */
  async function classifier(name: string, config: Record<string, unknown>, extra: Record<string, unknown>): Promise<string> {
    const { saveClassifier } = await import('../lib/classify/checkpoint.js');
    const { VisionTransformerClassifier, classifierConfigFrom } = await import('../lib/classify/model.js');
    const dir = join(root, name);
    const { mkdirSync } = await import('node:fs');
    mkdirSync(dir, { recursive: true });
    const model = new VisionTransformerClassifier(classifierConfigFrom(base, config), { seed: 1 });
    await saveClassifier(join(dir, 'classifier.safetensors'), model, extra);
    model.dispose();
    return dir;
  }
  const pct = (x: number) => (100 * x).toFixed(2);
  const re = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

  it('--knn on an image folder: every 5th image a query against a bank of the others, said; --split refused; a pre-training run needs --knn', async () => {
    const data = await folder('knn-data', 4, 5);
    const run = join(root, 'knn-run');
    const tiny = ['--preset', 'mae_vit_tiny_patch4_28', '--in-chans', '3', '--embed-dim', '32', '--depth', '1', '--num-heads', '2', '--decoder-embed-dim', '16', '--decoder-depth', '1', '--decoder-num-heads', '2'];
    expect(mae(['pretrain', '--data', data, ...tiny, '--epochs', '1', '--batch-size', '4', '--max-steps', '1', '--threads', '1', '--out', run]).code).toBe(0);
    const r = mae(['eval', '--checkpoint', run, '--knn', '--k', '1', '--threads', '1']);
    expect(r.err).toBe('');
    // the same kNN by hand: queries 0, 5, 10, 15, the others the bank
    const { loadModel } = await import('../lib/train/checkpoint.js');
    const { openDataset, pickSamples } = await import('../lib/train/data.js');
    const { knnEvaluate } = await import('../lib/train/knn.js');
    const all = await openDataset({ kind: 'folder', path: data });
    const { model } = await loadModel(run);
    const want = await knnEvaluate(model, pickSamples(all, [1, 2, 3, 4, 6, 7, 8, 9, 11, 12, 13, 14, 16, 17, 18, 19]), pickSamples(all, [0, 5, 10, 15]), { k: 1 });
    model.dispose();
    expect(want.top1).toBeLessThan(1); // each query in the bank: 100%
    expect(r.out).toMatch(new RegExp(`^kNN \\(k 1, T 0\\.07\\): top-1 ${pct(want.top1)}%  top-5 ${pct(want.top5)}% on 4 images of ${re(data)} \\(every 5th\\) against a bank of 16 of its other images \\(\\d+s\\)\\n$`));
    expect(mae(['eval', '--checkpoint', run, '--knn', '--split', 'test'])).toEqual({
      code: 2, out: '', err: `mae eval: --split: ${data} has no test split: with --knn every 5th image is a query and the others the bank; leave out --split\n`,
    });
    expect(mae(['eval', '--checkpoint', run])).toEqual({
      code: 1, out: '', err: `mae eval: classifier not found: ${join(run, 'classifier.safetensors')} (${run} holds a pre-training run, which mae eval scores with --knn: a classifier comes from mae finetune or linprobe, or classifierFromPretrain)\n`,
    });
  });

  it('data of more channels than the model takes is refused by name (eval, eval --knn, visualize), not by the data loader', async () => {
    const rgb = await folder('rgb', 2, 3);
    const ft = await classifier('grey-ft', { numClasses: 2, inChans: 1 }, { job: 'finetune', recipe: { data: { kind: 'synthetic' }, testData: null } });
    const refused = `${rgb} has 3 channels but the model takes 1 (only 1-channel data is replicated)\n`;
    expect(mae(['eval', '--checkpoint', ft, '--data', rgb])).toEqual({ code: 1, out: '', err: `mae eval: ${refused}` });
    const run = join(root, 'grey-run');
    const tiny = ['--data-kind', 'synthetic', '--embed-dim', '32', '--depth', '1', '--num-heads', '2', '--decoder-embed-dim', '16', '--decoder-depth', '1', '--decoder-num-heads', '2'];
    expect(mae(['pretrain', ...tiny, '--epochs', '1', '--batch-size', '4', '--max-steps', '1', '--threads', '1', '--workers', '0', '--out', run]).code).toBe(0);
    expect(mae(['eval', '--checkpoint', run, '--knn', '--data', rgb])).toEqual({ code: 1, out: '', err: `mae eval: ${refused}` });
    expect(mae(['visualize', '--checkpoint', run, '--data', rgb])).toEqual({ code: 1, out: '', err: `mae visualize: ${refused}` });
  });

  it('a classifier on an image folder: scored as a whole, --split refused; its class count checked; --knn refused for a fine-tuned one', async () => {
    const f3 = await folder('f3', 3, 3);
    const f2 = await folder('f2', 2, 3);
    const f4 = await folder('f4', 4, 3);
    const ft = await classifier('ft', { numClasses: 3 }, { job: 'finetune', recipe: { data: { kind: 'folder', path: f3 }, testData: null } });
    expect(mae(['eval', '--checkpoint', ft, '--data', f3, '--split', 'test'])).toEqual({
      code: 2, out: '', err: `mae eval: --split: ${f3} (folder) has no train and test splits: it is scored as a whole; give the evaluation folder as --data, without --split\n`,
    });
    // the same scores by hand
    const { loadClassifier } = await import('../lib/classify/checkpoint.js');
    const { evaluateClassifier } = await import('../lib/train/evaluate.js');
    const { openDataset } = await import('../lib/train/data.js');
    const { model } = await loadClassifier(ft);
    const want = async (dir: string) => evaluateClassifier(model, await openDataset({ kind: 'folder', path: dir }));
    const [w3, w2] = [await want(f3), await want(f2)];
    model.dispose();
    const line = (w: { top1: number; top5: number; n: number }, dir: string) => new RegExp(`^top-1 ${pct(w.top1)}%  top-5 ${pct(w.top5)}% on ${w.n} images of ${re(dir)} \\(\\d+s\\)\\n`);
    const a = mae(['eval', '--checkpoint', ft, '--data', f3, '--threads', '1']);
    expect([a.code, a.err]).toEqual([0, '']);
    expect(a.out).toMatch(line(w3, f3));
    expect(a.out).toContain(`confusion matrix (rows true, columns predicted): ${join(ft, 'confusion-f3.png')}\n`);
    expect(existsSync(join(ft, 'confusion-f3.png'))).toBe(true);
    // its own training folder by default: scored, and said to be its training data
    const b = mae(['eval', '--checkpoint', ft, '--threads', '1']);
    expect([b.code, b.err]).toEqual([0, `note: ${f3} is the data the classifier was trained on (it has no test split): give held-out images as --data\n`]);
    expect(b.out).toMatch(line(w3, f3));
    // fewer classes than the model's: a subset; more: refused before scoring
    const c = mae(['eval', '--checkpoint', ft, '--data', f2, '--out', join(root, 'c2.png'), '--threads', '1']);
    expect([c.code, c.err]).toEqual([0, '']);
    expect(c.out).toMatch(line(w2, f2));
    expect(mae(['eval', '--checkpoint', ft, '--data', f4])).toEqual({
      code: 1, out: '', err: `mae eval: ${f4} has 4 classes and the classifier 3: score it on data of at most 3 classes (class i of the data is the classifier's class i)\n`,
    });
    expect(mae(['eval', '--checkpoint', ft, '--knn'])).toEqual({
      code: 2, out: '', err: `mae eval: --knn takes a pre-training checkpoint (or a linear probe's classifier): ${ft} is a fine-tuned classifier, whose encoder has no final norm to take the kNN features after; evaluate it without --knn\n`,
    });
  });

  it('a classifier that records no data: --data is asked for, with and without --knn; --knn --split train refused', async () => {
    const lp = await classifier('lp', { inChans: 1, numClasses: 10, globalPool: false, headBatchNorm: true }, { job: 'linprobe' });
    const noData = `mae eval: ${lp} names no data (weights from elsewhere and classifiers of older versions record none): pass --data PATH (and --data-kind KIND where the folder does not tell)\n`;
    expect(mae(['eval', '--checkpoint', lp])).toEqual({ code: 2, out: '', err: noData });
    expect(mae(['eval', '--checkpoint', lp, '--knn'])).toEqual({ code: 2, out: '', err: noData });
    const a = mae(['eval', '--checkpoint', lp, '--data-kind', 'synthetic', '--limit', '16', '--threads', '1']);
    expect([a.code, a.err]).toEqual([0, '']);
    expect(a.out).toMatch(/^top-1 \d+\.\d\d%  top-5 \d+\.\d\d% on 16 test images \(\d+s\)\n/);
    const knn = ['eval', '--checkpoint', lp, '--knn', '--data-kind', 'synthetic', '--limit', '8', '--train-limit', '16', '--threads', '1'];
    const b = mae(knn);
    expect([b.code, b.err]).toEqual([0, '']);
    // 20 neighbours are asked (the default), the bank holds 16: all of them vote, and the line says so
    expect(b.out).toMatch(/^kNN \(k 16: the whole bank, 20 asked; T 0\.07\): top-1 \d+\.\d\d%  top-5 \d+\.\d\d% on 8 test images against a bank of 16 train images \(\d+s\)\n$/);
    // --limit and --train-limit are the counts of queries and bank images (knnData named them limits.query and limits.bank)
    const knnCut = (flags: string[]) => mae(['eval', '--checkpoint', lp, '--knn', '--data-kind', 'synthetic', '--threads', '1', ...flags]);
    expect(knnCut(['--limit=-1'])).toEqual({ code: 2, out: '', err: 'mae eval: --limit must be a positive integer, got -1\n' });
    expect(knnCut(['--limit', '8', '--train-limit', '2.5'])).toEqual({ code: 2, out: '', err: 'mae eval: --train-limit must be a positive integer, got 2.5\n' });
    // knnEvaluate's options are named by their flags
    expect(knnCut(['--limit', '8', '--train-limit', '16', '--k', '0'])).toEqual({ code: 2, out: '', err: 'mae eval: --k must be a positive integer, got the number 0\n' });
    expect(knnCut(['--limit', '8', '--train-limit', '16', '--temperature', '0'])).toEqual({ code: 2, out: '', err: 'mae eval: --temperature must be a positive finite number, got the number 0\n' });
    expect(mae([...knn, '--split', 'train'])).toEqual({
      code: 2, out: '', err: 'mae eval: --split train: with --knn the train split is the bank and the test split the queries; leave out --split\n',
    });
  });

  it('mae visualize on an image folder or shards refuses --split (they have no splits), and draws from them without it', async () => {
    const data = await folder('vis-data', 2, 2);
    const run = join(root, 'vis-run');
    const tiny = ['--preset', 'mae_vit_tiny_patch4_28', '--in-chans', '3', '--embed-dim', '32', '--depth', '1', '--num-heads', '2', '--decoder-embed-dim', '16', '--decoder-depth', '1', '--decoder-num-heads', '2'];
    expect(mae(['pretrain', '--data', data, ...tiny, '--epochs', '1', '--batch-size', '4', '--max-steps', '1', '--visualize-every', '0', '--threads', '1', '--out', run]).code).toBe(0);
    const png = join(root, 'vis.png');
    for (const split of ['test', 'train'])
      expect(mae(['visualize', '--checkpoint', run, '--split', split, '--out', png])).toEqual({
        code: 2, out: '', err: `mae visualize: --split: ${data} (folder) has no train and test splits: its images are drawn from as a whole; leave out --split\n`,
      });
    expect(mae(['visualize', '--checkpoint', run, '--seed', '-1', '--out', png])).toEqual({ code: 2, out: '', err: 'mae visualize: --seed must be a non-negative integer, got the number -1\n' });
    // --out is checked before drawing, as eval's and embed's are
    expect(mae(['visualize', '--checkpoint', run, '--out', root])).toEqual({ code: 1, out: '', err: `mae visualize: --out ${root}: is a folder; give the path of the file to write\n` });
    const fifo = join(root, 'vis-fifo');
    expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
    expect(mae(['visualize', '--checkpoint', run, '--out', fifo])).toEqual({ code: 1, out: '', err: `mae visualize: --out ${fifo}: is not a regular file (a device, pipe or socket); give the path of the file to write\n` });
    expect(statSync(fifo).isFIFO()).toBe(true);
    expect(existsSync(png)).toBe(false);
    expect(mae(['visualize', '--checkpoint', run, '--out', png])).toEqual({ code: 0, out: `wrote ${png}\n`, err: '' });
  });

  it('a missing checkpoint is named as such; an --out that cannot be written is refused before scoring; --out with --knn refused', async () => {
    const missing = join(root, 'no-such-run');
    expect(mae(['eval', '--checkpoint', missing])).toEqual({
      code: 1, out: '', err: `mae eval: classifier not found: ${missing} (eval takes a classifier of mae finetune or linprobe; a pre-training checkpoint is evaluated with --knn)\n`,
    });
    const f2 = await folder('out-data', 2, 2);
    const ft = await classifier('out-ft', { numClasses: 2 }, { job: 'finetune', recipe: { data: { kind: 'folder', path: f2 }, testData: null } });
    // a folder as --out: refused before the images are scored (no scores printed)
    expect(mae(['eval', '--checkpoint', ft, '--data', f2, '--out', root, '--threads', '1'])).toEqual({
      code: 1, out: '', err: `mae eval: --out ${root}: is a folder; give the path of the file to write\n`,
    });
    expect(mae(['eval', '--checkpoint', ft, '--knn', '--data', f2, '--out', join(root, 'knn.png')])).toEqual({
      code: 2, out: '', err: "mae eval: --out applies only without --knn (the file of a classifier's confusion matrix): --knn prints its accuracy and writes no file\n",
    });
    expect(existsSync(join(root, 'knn.png'))).toBe(false);
  });
});

describe('mae finetune and mae linprobe: the output folder, the test data, a stop', () => {
  const tinyPretrain = ['--data-kind', 'synthetic', '--limit', '64', '--epochs', '1', '--batch-size', '32', '--embed-dim', '32', '--depth', '1', '--num-heads', '2',
    '--decoder-embed-dim', '16', '--decoder-depth', '1', '--decoder-num-heads', '2', '--visualize-every', '0', '--threads', '1'];
  const scratch = ['finetune', '--from-scratch', '--data-kind', 'synthetic', '--limit', '64', '--batch-size', '32', '--embed-dim', '32', '--depth', '1', '--num-heads', '2', '--threads', '1'];

  it('mae finetune and linprobe refuse an --out that holds a run (a pre-training run\'s folder too) unless --overwrite, which --help documents', () => {
    const pt = mkdtempSync(join(tmpdir(), 'mae-cli-ft-pt-'));
    expect(mae(['pretrain', ...tinyPretrain, '--out', pt]).code).toBe(0);
    const log = readFileSync(join(pt, 'log.jsonl'), 'utf8');
    const into = mae(['finetune', '--checkpoint', pt, '--data-kind', 'synthetic', '--limit', '64', '--epochs', '1', '--batch-size', '32', '--out', pt]);
    expect([into.code, into.out, into.err]).toEqual([1, '', `mae finetune: ${pt} holds a run already (checkpoint.safetensors): choose another folder (--out), or start again there with --overwrite (overwrite), which removes that run's files\n`]);
    const over = mae(['linprobe', '--checkpoint', pt, '--out', pt, '--overwrite']);
    expect([over.code, over.err]).toEqual([1, `mae linprobe: ${pt} holds the checkpoint this run starts from (${pt}), which --overwrite would remove: choose another folder (--out)\n`]);
    expect(readFileSync(join(pt, 'log.jsonl'), 'utf8')).toBe(log);
    const out = mkdtempSync(join(tmpdir(), 'mae-cli-lp-out-'));
    const probe = ['linprobe', '--raw-pixels', '--data-kind', 'synthetic', '--limit', '64', '--epochs', '1', '--batch-size', '32', '--out', out];
    expect(mae(probe).code).toBe(0);
    const results = readFileSync(join(out, 'results.json'), 'utf8');
    const again = mae(probe);
    expect([again.code, again.err]).toEqual([1, `mae linprobe: ${out} holds a run already (results.json): choose another folder (--out), or start again there with --overwrite (overwrite), which removes that run's files\n`]);
    expect(readFileSync(join(out, 'results.json'), 'utf8')).toBe(results);
    // what a killed run's write left is removed, with a warning
    const deadPid = endedPid();
    const stale = join(out, `.results.json.${deadPid}.0123456789ab.tmp`);
    writeFileSync(stale, 'half');
    const replaced = mae([...probe, '--overwrite', '--seed', '3']);
    expect([replaced.code, replaced.err]).toEqual([0, `warning: removed ${stale}, a write that a killed process left unfinished\n`]);
    expect(existsSync(stale)).toBe(false);
    expect(JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')).seed).toBe(3);
    for (const cmd of ['finetune', 'linprobe']) {
      const help = mae([cmd, '--help']).out;
      expect(help).toContain('--overwrite (start again in an --out that holds a run, any of checkpoint.safetensors, classifier.safetensors,');
      expect(help).toContain('--test-data PATH --test-data-kind KIND (guessed from PATH)');
      expect(help).toMatch(/Ctrl-C or SIGTERM stops [^]* exits with 130\n? *\(143 for SIGTERM\)/);
    }
  });

  it('mae finetune: Ctrl-C over an old run (--overwrite) stops at the next step with 130, leaving only the new log and checkpoint', async () => {
    const out = mkdtempSync(join(tmpdir(), 'mae-cli-ft-int-'));
    const deadPid = endedPid();
    const stale = join(out, `.classifier.safetensors.${deadPid}.0123456789ab.tmp`); // a killed run's write: removed, with a warning
    writeFileSync(stale, 'half');
    const first = mae([...scratch, '--epochs', '1', '--out', out]);
    expect([first.code, first.err]).toEqual([0, `warning: removed ${stale}, a write that a killed process left unfinished\n`]);
    expect(existsSync(join(out, 'results.json'))).toBe(true);
    const { child, text: output, closed } = startMae([...scratch, '--epochs', '500', '--log-every', '1', '--out', out, '--overwrite']);
    // the new run's first step (or the end of a run that refused to start)
    while (child.exitCode === null && (!existsSync(join(out, 'log.jsonl')) || !readFileSync(join(out, 'log.jsonl'), 'utf8').includes('"step":1,'))) await sleep(5);
    child.kill('SIGINT');
    expect(await closed, output()).toBe(130);
    const text = output();
    expect(text).toContain('interrupted: stopping after the current step and writing a checkpoint; no classifier or results will be written (Ctrl-C again to quit at once)');
    expect(text).toMatch(/\nstopped after \d+ of 1000 steps: not evaluated; no classifier, confusion matrix or results.json written; checkpoint: \S+checkpoint.safetensors\nlog of the steps taken: /);
    expect(text).toContain(`continue the run with: mae finetune --resume --out ${out}\n`);
    expect(readdirSync(out).sort()).toEqual(['checkpoint.safetensors', 'log.jsonl']);
  });

  it('mae finetune: a run stopped by Ctrl-C is finished by --resume (exit 0), its log holding each step once', async () => {
    const out = join(mkdtempSync(join(tmpdir(), 'mae-cli-ft-resume-')), 'run');
    const { child, text: output, closed } = startMae([...scratch, '--epochs', '30', '--log-every', '1', '--out', out]);
    while (child.exitCode === null && (!existsSync(join(out, 'log.jsonl')) || !readFileSync(join(out, 'log.jsonl'), 'utf8').includes('"step":1,'))) await sleep(5);
    child.kill('SIGINT');
    expect(await closed, output()).toBe(130);
    const text = output();
    const stoppedAt = Number(/\nstopped after (\d+) of 60 steps/.exec(text)?.[1]);
    expect(stoppedAt).toBeLessThan(60);
    // the run's options come from its checkpoint; a flag that disagrees is refused, a setting may change
    expect(mae(['finetune', '--resume', '--out', out, '--epochs', '31'])).toEqual({ code: 1, out: '', err: "mae finetune: resume: option epochs differs from the run's (30 in its checkpoint, 31 here)\n" });
    const resumed = mae(['finetune', '--resume', '--out', out, '--log-every', '1']);
    expect(resumed.code, resumed.err).toBe(0);
    expect(resumed.out).toMatch(new RegExp(`^resuming the run at step ${stoppedAt} of 60 \\(epoch \\d+(, batch 1)?\\): `));
    expect(resumed.out).toContain('\nfrom scratch: top-1 ');
    expect(readdirSync(out).sort()).toEqual(['classifier.safetensors', 'confusion.png', 'log.jsonl', 'results.json']);
    const log = readFileSync(join(out, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { step?: number; epochEnd?: number });
    expect(log.flatMap((l) => (l.step === undefined ? [] : [l.step]))).toEqual(Array.from({ length: 60 }, (_, i) => i + 1));
    expect(log.flatMap((l) => (l.epochEnd === undefined ? [] : [l.epochEnd]))).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
    expect(mae(['finetune', '--resume', '--out', out]).err).toBe(
      `mae finetune: resume: the run in ${out} is finished (results.json, and no checkpoint.safetensors): there is nothing left to train; start a new run there with --overwrite, or in another folder (--out)\n`,
    );
  });

  it('mae linprobe: SIGTERM stops after the current epoch with 143 and writes no results', async () => {
    const out = join(mkdtempSync(join(tmpdir(), 'mae-cli-lp-term-')), 'probe');
    const { child, text: output, closed } = startMae(['linprobe', '--raw-pixels', '--data-kind', 'synthetic', '--limit', '64', '--epochs', '100000', '--batch-size', '64', '--threads', '1', '--out', out]);
    while (child.exitCode === null && (!existsSync(join(out, 'log.jsonl')) || readFileSync(join(out, 'log.jsonl'), 'utf8') === '')) await sleep(5);
    child.kill('SIGTERM');
    expect(await closed, output()).toBe(143);
    const text = output();
    expect(text).toContain('SIGTERM: stopping after the current batch of features or epoch of the head; no results will be written');
    expect(text).toContain(`stopped: the probe was not finished; no head, classifier, confusion matrix or results.json written in ${out} (the log of the epochs done: ${join(out, 'log.jsonl')})`);
    expect(text).not.toMatch(/linear probe: top-1/);
    expect(readdirSync(out)).toEqual(['log.jsonl']);
  });

  it('mae finetune and linprobe on an image folder need --test-data; mae eval scores a linprobe classifier on its own data', async () => {
    const root = mkdtempSync(join(tmpdir(), 'mae-cli-test-data-'));
    const { writeImage } = await import('./helpers/images.js');
    for (const [name, n] of [['train', 4], ['test', 2]] as const)
      for (const c of ['a', 'b']) {
        mkdirSync(join(root, name, c), { recursive: true });
        for (let i = 0; i < n; i++) await writeImage(join(root, name, c, `${i}.png`), 16, 16, i + (c === 'b' ? 10 : 0) + (name === 'test' ? 100 : 0));
      }
    const rgb = ['--img-size', '16', '--patch-size', '4', '--in-chans', '3', '--embed-dim', '32', '--depth', '1', '--num-heads', '2', '--batch-size', '4', '--epochs', '1', '--threads', '1'];
    for (const cmd of [['finetune', '--from-scratch', ...rgb], ['linprobe', '--raw-pixels', '--batch-size', '4', '--epochs', '1']]) {
      const out = join(root, `${cmd[0]}-out`);
      const r = mae([...cmd, '--data', join(root, 'train'), '--out', out]);
      expect([r.code, r.err]).toEqual([1, `mae ${cmd[0]}: the data (folder ${join(root, 'train')}) has no test split: its test score would be measured on its training images; give test data (testData, --test-data PATH)\n`]);
      expect(existsSync(out)).toBe(false);
      const missing = mae([...cmd, '--data', join(root, 'train'), '--test-data', join(root, 'nope'), '--out', out]);
      expect([missing.code, missing.err]).toEqual([2, `mae ${cmd[0]}: --test-data ${join(root, 'nope')}: no such file or folder\n`]);
      expect(mae([...cmd, '--data', join(root, 'train'), '--test-data-kind', 'nope', '--out', out]).err).toBe(`mae ${cmd[0]}: --test-data-kind must be one of fashion-mnist, mnist, cifar10, folder, shards, synthetic, got 'nope'\n`);
    }
    const ft = mae(['finetune', '--from-scratch', ...rgb, '--data', join(root, 'train'), '--test-data', join(root, 'test'), '--out', join(root, 'ft')]);
    expect(ft.code, ft.err).toBe(0);
    const res = JSON.parse(readFileSync(join(root, 'ft', 'results.json'), 'utf8'));
    expect([res.trainSamples, res.testSamples, res.testData, res.precision]).toEqual([8, 4, { kind: 'folder', path: join(root, 'test') }, 'fp32']);

    // a linprobe classifier records its data: mae eval scores it on the synthetic test split, not on Fashion-MNIST
    const pt = join(root, 'pt');
    expect(mae(['pretrain', ...tinyPretrain, '--out', pt]).code).toBe(0);
    const lp = join(root, 'lp');
    expect(mae(['linprobe', '--checkpoint', pt, '--limit', '64', '--epochs', '1', '--batch-size', '32', '--threads', '1', '--out', lp]).code).toBe(0);
    const ev = mae(['eval', '--checkpoint', lp, '--out', join(root, 'eval.png')]);
    expect(ev.code, ev.err).toBe(0);
    expect(ev.out).toMatch(/^top-1 \d+\.\d\d% {2}top-5 \d+\.\d\d% on 1024 test images /);
  });
});
