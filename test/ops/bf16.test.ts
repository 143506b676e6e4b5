// bfloat16 on the CPU: every op that takes bf16 activations, against the double-precision reference computed from
// the exact bf16 values the op received. Outputs are rounded to bf16 once, so each row of a result must be within
// ROW_TOL of the reference relative to that row's largest reference value (a per-row maximum error, not one norm
// over the tensor, which would hide a bad row). Odd sizes throughout; attention with inputs scaled x10 and x30 and
// with one dominant key per row. The conversions are checked bit for bit, on the AVX512-BF16 path and on the
// integer fallback (a child process with MAE_CPU_BF16=fallback), and the products on oneDNN and on the BLAS fallback
// (a child process where oneDNN has no bf16 kernel: DNNL_MAX_CPU_ISA=AVX2).
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { native, type NativeTensor } from '../../lib/native.js';
import { Tensor, tidy } from '../../lib/tensor.js';
import { hasCpuFlag } from '../helpers/cpu.js';
import * as ref from '../helpers/reference.js';
import { randn, randu, rng } from '../helpers/random.js';
import { tensor } from '../helpers/tensors.js';

/** half a bf16 ulp is 2^-9 of the value; a row may also carry float32 sums: 2^-8 of the row's largest value */
const ROW_TOL = 2 ** -8;
/** attention rounds P (and dS) to bf16 before their products: two roundings in sequence */
const ATT_TOL = 2 ** -7;

/** A bf16 tensor of the values (rounded), and the exact values it holds. */
function bf16(values: ArrayLike<number>, shape: number[]): { t: Tensor; v: Float32Array } {
  const t = new Tensor(native.to(tensor(values, shape).handle, 'cpu', 'bfloat16'));
  return { t, v: t.dataSync() };
}
const T = (h: NativeTensor) => new Tensor(h);

/** An ES module script run in a child Node process with `env` added to the environment (and `input` on its stdin): what it printed, parsed as JSON. */
function runChild<R>(script: string, env: Record<string, string>, input?: string): R {
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { input, encoding: 'utf8', env: { ...process.env, ...env }, maxBuffer: 1 << 28 });
  if (r.status !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout) as R;
}

/** x as float32, then rounded to bf16 by the rule (nearest, ties to even), from its bits: the reference for finite values */
function roundBf16(x: number): number {
  const u = new Uint32Array(Float32Array.of(x).buffer)[0]!;
  const lower = u & 0xffff0000;
  const rest = u & 0xffff;
  const up = rest > 0x8000 || (rest === 0x8000 && (u & 0x10000) !== 0);
  return new Float32Array(Uint32Array.of(up ? lower + 0x10000 : lower).buffer)[0]!;
}

/**
 * For every row of `rowLen` values: max |got - want| <= tol * max |want| (+ atol). Returns the worst ratio seen.
 * atol may instead be per element (a row's largest counts): where a sum cancels, float32 carries errors relative to
 * the magnitudes it summed, not to the small result.
 */
function expectRows(got: ArrayLike<number>, want: ArrayLike<number>, rowLen: number, label: string, tol = ROW_TOL, atol: number | ArrayLike<number> = 0): number {
  expect(got.length, label).toBe(want.length);
  let worst = 0;
  for (let r = 0; r * rowLen < want.length; r++) {
    let err = 0;
    let scale = 0;
    let floor = typeof atol === 'number' ? atol : 0;
    for (let j = r * rowLen; j < (r + 1) * rowLen; j++) {
      err = Math.max(err, Math.abs(got[j]! - want[j]!));
      scale = Math.max(scale, Math.abs(want[j]!));
      if (typeof atol !== 'number') floor = Math.max(floor, atol[j]!);
    }
    if (!(err <= tol * scale + floor)) throw new Error(`${label}: row ${r} max error ${err} exceeds ${tol} x ${scale} + ${floor}`);
    if (scale > 0) worst = Math.max(worst, err / scale);
  }
  return worst;
}

/**
 * The attention gradient as the kernel defines it, from the out it is given: P from qkv (float64), delta_i =
 * dout_i . out_i, dS = P (dP - delta), dq = dS k scale, dk = dS^T q scale, dv = P^T dout. Also `floor`, an absolute
 * tolerance per element for where these sums cancel: each term of a bf16 product carries the rounding of its P or dS
 * (2^-9 of the term, 2^-8 allowed), so their sum is only as exact as 2^-8 of the sum of the terms' magnitudes; and
 * dP - delta in float32 is only as exact as 2^-16 of |dP| + |delta| (a row that attends to one key whose value out
 * repeats).
 */
function attentionBackwardGiven(qkv: ArrayLike<number>, out: ArrayLike<number>, dout: ArrayLike<number>, B: number, N: number, D: number, H: number): { g: Float64Array; floor: Float64Array } {
  const hd = D / H;
  const scale = 1 / Math.sqrt(hd);
  const { P } = ref.attention(qkv, B, N, D, H);
  const g = new Float64Array(B * N * 3 * D);
  const floor = new Float64Array(B * N * 3 * D).fill(1e-30); // and rows of float32 underflow compare to zero
  const at = (b: number, i: number, col: number) => qkv[(b * N + i) * 3 * D + col]!;
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++)
      for (let i = 0; i < N; i++) {
        let delta = 0;
        for (let d = 0; d < hd; d++) delta += dout[(b * N + i) * D + h * hd + d]! * out[(b * N + i) * D + h * hd + d]!;
        for (let j = 0; j < N; j++) {
          const p = P[((b * H + h) * N + i) * N + j]!;
          let dp = 0;
          for (let d = 0; d < hd; d++) dp += dout[(b * N + i) * D + h * hd + d]! * at(b, j, 2 * D + h * hd + d);
          const ds = p * (dp - delta);
          const dsMag = Math.abs(ds) * 2 ** -8 + p * (Math.abs(dp) + Math.abs(delta)) * 2 ** -16;
          for (let d = 0; d < hd; d++) {
            const qi = (b * N + i) * 3 * D + h * hd + d;
            const kj = (b * N + j) * 3 * D + D + h * hd + d;
            g[qi] = g[qi]! + ds * at(b, j, D + h * hd + d) * scale;
            g[kj] = g[kj]! + ds * at(b, i, h * hd + d) * scale;
            g[kj + D] = g[kj + D]! + p * dout[(b * N + i) * D + h * hd + d]!;
            floor[qi] = floor[qi]! + dsMag * Math.abs(at(b, j, D + h * hd + d)) * scale;
            floor[kj] = floor[kj]! + dsMag * Math.abs(at(b, i, h * hd + d)) * scale;
            floor[kj + D] = floor[kj + D]! + p * Math.abs(dout[(b * N + i) * D + h * hd + d]!) * 2 ** -8;
          }
        }
      }
  return { g, floor };
}

describe('conversions to bfloat16', () => {
  // values with known roundings: ties to even, the largest finite, overflow to inf, NaN, denormals to signed zero
  const cases: [number, number][] = [
    [1 + 2 ** -8, 1], // a tie: to even (down)
    [1 + 3 * 2 ** -8, 1 + 2 ** -6], // a tie: to even (up)
    [1 + 2 ** -8 + 2 ** -20, 1 + 2 ** -7], // above the tie
    [-(1 + 3 * 2 ** -8), -(1 + 2 ** -6)],
    [3.3895313892515355e38, 3.3895313892515355e38], // the largest finite bf16
    [3.4e38, Infinity],
    [Infinity, Infinity],
    [-Infinity, -Infinity],
    [1e-39, 0], // float32 denormal -> +0
    [-1e-39, -0],
    [1.1754943508222875e-38, 1.1754943508222875e-38], // the smallest normal stays
    [0, 0],
    [-0, -0],
  ];
  const script = `
    const { native } = await import(${JSON.stringify(new URL('../../dist/lib/native.js', import.meta.url).href)});
    const xs = Float32Array.from(${JSON.stringify(cases.map(([x]) => (Object.is(x, -0) ? '-0' : String(x))))}.map(Number));
    const withNaN = Float32Array.from([...xs, NaN]);
    const big = Float32Array.from({ length: 70001 }, (_, i) => Math.sin(i * 0.731) * 2 ** ((i % 60) - 30));
    const a = native.fromArray(withNaN, [withNaN.length]), b = native.fromArray(big, [big.length]);
    const r = native.to(a, 'cpu', 'bfloat16').read(), s = native.to(b, 'cpu', 'bfloat16').read();
    console.log(JSON.stringify({ how: native.info().bf16Convert, small: Array.from(r, (v) => Object.is(v, -0) ? '-0' : String(v)), big: Array.from(s) }));`;
  const run = (env: Record<string, string>) => runChild<{ how: string; small: string[]; big: number[] }>(script, env);

  it('round to nearest even, keep inf and NaN, flush denormals to signed zero; the fallback gives the same bits', () => {
    const hw = run({});
    const sw = run({ MAE_CPU_BF16: 'fallback' });
    expect(sw.how).toMatch(/integer/);
    for (const r of [hw, sw]) {
      cases.forEach(([, want], i) => expect(r.small[i], `case ${i} (${r.how})`).toBe(Object.is(want, -0) ? '-0' : String(want)));
      expect(r.small[cases.length]).toBe('NaN');
    }
    // 70001 values over 60 binades: every one rounds to nearest even (checked against the float64 rule), both paths
    const big = Float32Array.from({ length: 70001 }, (_, i) => Math.sin(i * 0.731) * 2 ** ((i % 60) - 30));
    const want = Array.from(big, roundBf16);
    expect(hw.big).toEqual(want);
    expect(sw.big).toEqual(want);
  });
});

describe('bf16 ops on the CPU against float64', () => {
  // [37, 45, 29]: odd sizes; the rest have a reduction length that is odd and above 32 with M or N off the blocks
  // (forward K 63; dW's M 95; dx's N 63), which on AMX with oneDNN before 2.7.4 run on the BLAS (amxOddKDeclined:
  // that oneDNN can configure the AMX tiles wrongly for them) and through oneDNN everywhere else
  for (const [M, K, N] of [[37, 45, 29], [97, 63, 40], [95, 97, 40], [97, 40, 63]] as const)
  it(`linear ${M} x ${K} x ${N}: forward with the bias fused, dx, dW and db, with a bf16 weight copy and without one`, () =>
    tidy(() => {
      const g = rng(1);
      const x = bf16(randn(g, M * K), [M, K]);
      const w = tensor(randn(g, N * K, 0.3), [N, K]);
      const ws = bf16(w.dataSync(), [N, K]);
      const b = tensor(randn(g, N), [N]);
      const dy = bf16(randn(g, M * N), [M, N]);
      for (const shadow of [ws.t, null]) {
        const y = T(native.linear(x.t.handle, w.handle, b.handle, shadow?.handle ?? null));
        expect(y.dtype).toBe('bfloat16');
        // the product reads the weight as bf16 either way (without a copy it rounds the weight itself)
        expectRows(y.dataSync(), ref.linear(x.v, ws.v, b.dataSync(), M, K, N), N, 'y');
        const [dx, dw, db] = native.linearBackward(x.t.handle, w.handle, dy.t.handle, true, true, shadow?.handle ?? null).map((h) => T(h!));
        expect([dx!.dtype, dw!.dtype, db!.dtype]).toEqual(['bfloat16', 'float32', 'float32']);
        const r = ref.linearBackward(x.v, ws.v, dy.v, M, K, N);
        expectRows(dx!.dataSync(), r.dx, K, 'dx');
        // dW and db are float32: summed in float32 from bf16 operands
        expectRows(dw!.dataSync(), r.dw, K, 'dW', 1e-5);
        expectRows(db!.dataSync(), r.db, N, 'db', 1e-5);
      }
    }));

  // dW's reduction runs over batch x tokens. On AMX, oneDNN 2.6.3's brgemm splits a 2-D product's reduction of 2048 or
  // more over threads from 16 threads on (up to nthr / 8 parts of at least 1024, brgemm_matmul_utils.cpp) and adds the
  // parts, a path that a small machine's default thread count never takes: the same product at 1, 2, 16 and 24
  // threads. (On a Zen 4, AVX512-BF16, oneDNN splits such dW reductions from 2 threads on: their bits differ from 1
  // thread's.)
  it('linear dW with a reduction of 4096 rows at 1 to 24 threads (oneDNN may split it over threads)', () =>
    tidy(() => {
      const [M, K, N] = [4096, 48, 40];
      const g = rng(4);
      const x = bf16(randn(g, M * K), [M, K]);
      const w = tensor(randn(g, N * K, 0.3), [N, K]);
      const dy = bf16(randn(g, M * N), [M, N]);
      const want = ref.linearBackward(x.v, bf16(w.dataSync(), [N, K]).v, dy.v, M, K, N).dw;
      const threads = native.info().threads;
      try {
        for (const n of [1, 2, 16, 24]) {
          native.setNumThreads(n);
          const dw = T(native.linearBackward(x.t.handle, w.handle, dy.t.handle, false, false)[1]!);
          expectRows(dw.dataSync(), want, K, `dW at ${n} threads`, 1e-5);
        }
      } finally {
        native.setNumThreads(threads);
      }
    }));

  // oneDNN's primitives run on at most the threads they were made for, so the library keeps one per thread count: a
  // product first run at 1 thread, then at 2, must give the bits of a process that ran it at 2 from the start (where
  // oneDNN splits this dW's reduction at 2 threads, as on a Zen 4, the 1-thread primitive's bits differ from those)
  it('oneDNN products follow setNumThreads: made at 1 thread, then run at 2, the bits of a run at 2 (child processes)', () => {
    const script = (threads: number[]) => `
      const { native } = await import(${JSON.stringify(new URL('../../dist/lib/native.js', import.meta.url).href)});
      const [M, K, N] = [4096, 64, 64];
      const x = native.to(native.fromArray(Float32Array.from({ length: M * K }, (_, i) => Math.sin(i * 0.37)), [M, K]), 'cpu', 'bfloat16');
      const dy = native.to(native.fromArray(Float32Array.from({ length: M * N }, (_, i) => Math.cos(i * 0.61)), [M, N]), 'cpu', 'bfloat16');
      const w = native.fromArray(new Float32Array(N * K).fill(0.1), [N, K]);
      let dw;
      for (const n of ${JSON.stringify(threads)}) { native.setNumThreads(n); dw = native.linearBackward(x, w, dy, false, false)[1]; }
      console.log(JSON.stringify(Array.from(new Uint32Array(Float32Array.from(dw.read()).buffer))));`;
    const run = (threads: number[]) => runChild<number[]>(script(threads), {});
    const two = run([2]);
    expect(two.length).toBe(64 * 64);
    expect(run([1, 2])).toEqual(two);
  });

  // A shadow that AdamW wrote is read by the forward and dx products from copies in oneDNN's blocked layout, made
  // after each step (native/cpu/blocked.cpp): [37, 64, 48] fills the AVX-512 packing tiles, [19, 21, 5] has none (the
  // element loop), [33, 80, 40] both (K = 80: two 32-column tiles and 16 columns left; N = 40: a 16-row panel, 8 rows)
  for (const [M, K, N] of [[37, 64, 48], [19, 21, 5], [33, 80, 40], [97, 63, 40]] as const)
  it(`linear with a shadow AdamW wrote, ${M} x ${K} x ${N}: its blocked copies follow every step, fill and free`, () =>
    tidy(() => {
      const g = rng(11);
      const w = tensor(randn(g, N * K, 0.3), [N, K]);
      const shadow = T(native.to(w.handle, 'cpu', 'bfloat16'));
      const [m, v] = [tensor(new Float32Array(N * K), [N, K]), tensor(new Float32Array(N * K), [N, K])];
      const x = bf16(randn(g, M * K), [M, K]);
      const dy = bf16(randn(g, M * N), [M, N]);
      const b = tensor(randn(g, N), [N]);
      const blockedBytes = () => native.memoryStats().blockedWeightBytes!;
      const before = blockedBytes();
      // copies are made where oneDNN runs the bf16 products (native bf16: AVX512-BF16 or AMX), one for each of the
      // two products (blocked layouts); elsewhere (the BLAS runs them) no copies at all
      const dnnl = native.info().dnnl;
      // a product whose reduction length is odd and above 32 is declined on AMX with oneDNN before 2.7.4 (the
      // forward's is K, dx's N): no copy for it
      const roles = [K, N].filter((r) => dnnl.bf16Products && !(dnnl.amxOddKDeclined && r > 32 && r % 2 === 1)).length;
      const copies = roles > 0;
      const least = 2 * roles * N * K;
      // y and dx against the reference from the shadow's values now (a copy left from the step before would be off by
      // the whole update: lr 0.5 with Adam's unit-sized steps)
      const check = (label: string) => {
        const ws = shadow.dataSync();
        const y = T(native.linear(x.t.handle, w.handle, b.handle, shadow.handle));
        expectRows(y.dataSync(), ref.linear(x.v, ws, b.dataSync(), M, K, N), N, `y ${label}`);
        const dx = T(native.linearBackward(x.t.handle, w.handle, dy.t.handle, true, true, shadow.handle)[0]!);
        expectRows(dx.dataSync(), ref.linearBackward(x.v, ws, dy.v, M, K, N).dx, K, `dx ${label}`);
      };
      for (let step = 1; step <= 3; step++) {
        const grad = tensor(randn(g, N * K), [N, K]);
        native.adamwStep([w.handle], [grad.handle], [m.handle], [v.handle], [0.5], [0], 0.9, 0.95, 1e-8, step, [shadow.handle]);
        check(`after step ${step}`);
        // 2 bytes per element of a padded layout, a copy for each product that needs one
        if (copies) expect(blockedBytes() - before).toBeGreaterThanOrEqual(least);
        else expect(blockedBytes()).toBe(before);
      }
      // written in place by something else: the copies go, the products read the shadow itself
      native.fill(shadow.handle, 0.25);
      expect(blockedBytes()).toBe(before);
      check('after fill');
      // registered again by the next step, then freed with the shadow; memory at the same place is a new weight
      native.adamwStep([w.handle], [tensor(randn(g, N * K), [N, K]).handle], [m.handle], [v.handle], [0.5], [0], 0.9, 0.95, 1e-8, 4, [shadow.handle]);
      check('after step 4');
      expect(blockedBytes() > before).toBe(copies);
      shadow.dispose();
      expect(blockedBytes()).toBe(before);
      const other = bf16(randn(g, N * K, 0.3), [N, K]);
      const y = T(native.linear(x.t.handle, w.handle, b.handle, other.t.handle));
      expectRows(y.dataSync(), ref.linear(x.v, other.v, b.dataSync(), M, K, N), N, 'y with a new bf16 weight');
    }));

  // width 37: the portable rows; 48 and 128: the AVX-512 rows where the CPU has AVX512-BF16
  for (const D of [37, 48, 128])
  it(`layerNorm, addLayerNorm and the backward with and without dres, width ${D}: float32 statistics, bf16 rows`, () =>
    tidy(() => {
      const g = rng(2);
      const R = 13;
      const x = bf16(randn(g, R * D, 3), [R, D]);
      const r2 = bf16(randn(g, R * D), [R, D]);
      const w = tensor(randn(g, D), [D]);
      const b = tensor(randn(g, D), [D]);
      const [y, mean, rstd] = native.layerNorm(x.t.handle, w.handle, b.handle, 1e-6).map(T);
      const want = ref.layerNorm(x.v, w.dataSync(), b.dataSync(), R, D, 1e-6);
      expect([y!.dtype, mean!.dtype, rstd!.dtype]).toEqual(['bfloat16', 'float32', 'float32']);
      expectRows(y!.dataSync(), want.y, D, 'y');
      expectRows(mean!.dataSync(), want.mean, R, 'mean', 1e-6, 1e-6);
      expectRows(rstd!.dataSync(), want.rstd, R, 'rstd', 1e-5);
      // addLayerNorm: s = x + r rounded to bf16; the statistics are those of s as stored
      const [s, ys] = native.addLayerNorm(x.t.handle, r2.t.handle, w.handle, b.handle, 1e-6).map(T);
      expectRows(s!.dataSync(), ref.add(x.v, r2.v), D, 's');
      expectRows(ys!.dataSync(), ref.layerNorm(s!.dataSync(), w.dataSync(), b.dataSync(), R, D, 1e-6).y, D, 'layerNorm(s)');
      // backward
      const dy = bf16(randn(g, R * D), [R, D]);
      const dres = bf16(randn(g, R * D), [R, D]);
      const [dx, dw, db] = native.layerNormBackward(dy.t.handle, x.t.handle, w.handle, mean!.handle, rstd!.handle, dres.t.handle).map(T);
      const rb = ref.layerNormBackward(x.v, w.dataSync(), dy.v, R, D, 1e-6);
      expect(dx!.dtype).toBe('bfloat16');
      expectRows(dx!.dataSync(), ref.add(rb.dx, dres.v), D, 'dx + dres');
      expectRows(dw!.dataSync(), rb.dw, D, 'dw', 1e-5);
      const dx0 = T(native.layerNormBackward(dy.t.handle, x.t.handle, w.handle, mean!.handle, rstd!.handle, null)[0]);
      expectRows(dx0.dataSync(), rb.dx, D, 'dx');
      expectRows(db!.dataSync(), rb.db, D, 'db', 1e-5);
    }));

  it('gelu and biasGelu, forward and backward (db in float32)', () =>
    tidy(() => {
      const g = rng(3);
      const [R, N] = [11, 2053]; // rows longer than one conversion chunk
      const x = bf16(randn(g, R * N, 3), [R, N]);
      const y = T(native.gelu(x.t.handle));
      expect(y.dtype).toBe('bfloat16');
      expectRows(y.dataSync(), ref.gelu(x.v), N, 'gelu');
      const dy = bf16(randn(g, R * N), [R, N]);
      const dx = T(native.geluBackward(x.t.handle, dy.t.handle));
      const gg = ref.geluGrad(x.v);
      expectRows(dx.dataSync(), Float64Array.from(gg, (v, i) => v * dy.v[i]!), N, 'gelu dx');
      const b = tensor(randn(g, N), [N]);
      const h = Float64Array.from(x.v, (v, i) => v + b.dataSync()[i % N]!);
      expectRows(T(native.biasGelu(x.t.handle, b.handle)).dataSync(), ref.gelu(h), N, 'biasGelu');
      const [bdx, bdb] = native.biasGeluBackward(x.t.handle, b.handle, dy.t.handle, true).map((t) => T(t!));
      const wantDx = Float64Array.from(ref.geluGrad(h), (v, i) => v * dy.v[i]!);
      expectRows(bdx!.dataSync(), wantDx, N, 'biasGelu dx');
      // db sums the bf16 dx it wrote
      expectRows(bdb!.dataSync(), ref.sumTo(bdx!.dataSync(), N), N, 'biasGelu db', 1e-5);
      // the negative tail keeps its relative accuracy: rows of h in [-12, -3] (y from -4e-3 down to -2e-32)
      const tail = bf16(Float32Array.from({ length: 3 * 37 }, (_, i) => -3 - (9 * i) / 110), [3, 37]);
      const zero = tensor(new Float32Array(37), [37]);
      const ty = T(native.biasGelu(tail.t.handle, zero.handle)).dataSync();
      const tdy = bf16(new Float32Array(3 * 37).fill(1), [3, 37]);
      const tdx = T(native.biasGeluBackward(tail.t.handle, zero.handle, tdy.t.handle, false)[0]!).dataSync();
      // (the reference from erfc: ref.gelu's 1 + erf loses the tail's relative accuracy in float64 too); each value
      // within half a bf16 ulp (at most 2^-8 of it) plus the float32 formula's error (below 1e-5)
      for (const [i, v] of tail.v.entries()) {
        const cdf = 0.5 * ref.erfc(-v / Math.SQRT2);
        const wantY = v * cdf;
        const wantG = cdf + (v * Math.exp(-0.5 * v * v)) / Math.sqrt(2 * Math.PI);
        expect(Math.abs(ty[i]! - wantY), `gelu(${v})`).toBeLessThanOrEqual((2 ** -8 + 1e-5) * Math.abs(wantY));
        expect(Math.abs(tdx[i]! - wantG), `gelu'(${v})`).toBeLessThanOrEqual((2 ** -8 + 1e-5) * Math.abs(wantG));
      }
    }));

  it('biasGelu with bf16 results: the same bits where the results are rounded in registers and through the integer fallback (MAE_CPU_BF16=fallback, in a child process)', () => {
    // on CPUs with AVX512-BF16 the rows are rounded by vcvtneps2bf16 as they are computed, with the fallback through
    // a float32 row and to_bf16's integer rounding: the same arithmetic, so the same bits (odd sizes, a masked tail)
    const script = `
      const { native } = await import(${JSON.stringify(new URL('../../dist/lib/native.js', import.meta.url).href)});
      const [R, N] = [5, 1037];
      const x = native.to(native.fromArray(Float32Array.from({ length: R * N }, (_, i) => Math.sin(i * 0.377) * 14), [R, N]), 'cpu', 'bfloat16');
      const dy = native.to(native.fromArray(Float32Array.from({ length: R * N }, (_, i) => Math.cos(i * 0.61)), [R, N]), 'cpu', 'bfloat16');
      const b = native.fromArray(Float32Array.from({ length: N }, (_, j) => Math.sin(j) * 0.3), [N]);
      const bits = (t) => Array.from(new Uint32Array(Float32Array.from(t.read()).buffer));
      const [dx, db] = native.biasGeluBackward(x, b, dy, true);
      console.log(JSON.stringify({ how: native.info().bf16Convert, y: bits(native.biasGelu(x, b)), dx: bits(dx), db: bits(db) }));`;
    const run = (env: Record<string, string>) => runChild<{ how: string; y: number[]; dx: number[]; db: number[] }>(script, env);
    const hw = run({}), sw = run({ MAE_CPU_BF16: 'fallback' });
    expect(sw.how).toMatch(/integer/);
    expect(hw.y.length).toBe(5 * 1037);
    expect(new Set(hw.y).size).toBeGreaterThan(1000);
    expect(sw.y).toEqual(hw.y);
    expect(sw.dx).toEqual(hw.dx);
    expect(sw.db).toEqual(hw.db);
  });

  it('biasGelu with bf16 results: every bf16 input with 2^-8 <= |x| <= 12 gives the bf16 rounding of the exact value', () =>
    tidy(() => {
      // bf16 keeps 8 bits, so the float32 formula's error (about 2e-7 of the value) shows only where the exact value
      // lies that close to a halfway point between two bf16 numbers: a handful of the 2,946 inputs at most. An error of
      // 1e-5 in one coefficient of the AVX-512 kernel's polynomial already gives 3 such values in each output.
      const u = new Uint32Array(1);
      const f = new Float32Array(u.buffer);
      const xs: number[] = [];
      for (let bits = 0; bits < 0x10000; bits++) {
        u[0] = bits << 16;
        if (Math.abs(f[0]!) >= 2 ** -8 && Math.abs(f[0]!) <= 12) xs.push(f[0]!);
      }
      const n = xs.length;
      const x = bf16(xs, [1, n]);
      expect(Array.from(x.v)).toEqual(xs);
      const zero = tensor(new Float32Array(n), [n]);
      const ones = bf16(new Float32Array(n).fill(1), [1, n]);
      const y = T(native.biasGelu(x.t.handle, zero.handle)).dataSync();
      const dx = T(native.biasGeluBackward(x.t.handle, zero.handle, ones.t.handle, false)[0]!).dataSync();
      const off = { y: 0, dx: 0 };
      for (const [i, v] of xs.entries()) {
        const cdf = 0.5 * ref.erfc(-v / Math.SQRT2);
        // (no denormals: |y| >= 2e-32 here)
        const want = { y: roundBf16(v * cdf), dx: roundBf16(cdf + (v * Math.exp(-0.5 * v * v)) / Math.sqrt(2 * Math.PI)) };
        for (const [k, got] of [['y', y[i]!], ['dx', dx[i]!]] as const) {
          if (got === want[k]) continue;
          off[k]++;
          // the other neighbour of the exact value: one bf16 ulp away
          expect(Math.abs(got - want[k]), `${k} at x = ${v}`).toBeLessThanOrEqual(2 ** (Math.floor(Math.log2(Math.abs(want[k]))) - 7));
        }
      }
      expect(off.y, 'gelu values off by one ulp').toBeLessThanOrEqual(2);
      expect(off.dx, "gelu' values off by one ulp").toBeLessThanOrEqual(2);
      // far tails, where exp(-x^2 / 2) is below float32's range: exactly x and 1 above, -0 and 0 below (a derivative
      // x exp(-x^2 / 2) that kept a 2^-126 floor for the exp would give -0.4 at x = -1e38); NaN stays NaN
      const far = [14, 20, 1e4, 1e20, 1e38, -14, -20, -1e4, -1e20, -1e38, NaN];
      const fx = bf16(far, [1, far.length]);
      const fzero = tensor(new Float32Array(far.length), [far.length]);
      const fy = T(native.biasGelu(fx.t.handle, fzero.handle)).dataSync();
      const fdx = T(native.biasGeluBackward(fx.t.handle, fzero.handle, bf16(new Float32Array(far.length).fill(1), [1, far.length]).t.handle, false)[0]!).dataSync();
      expect(Array.from(fy)).toEqual(Array.from(fx.v, (v) => (v > 0 ? v : Number.isNaN(v) ? NaN : -0)));
      expect(Array.from(fdx)).toEqual(Array.from(fx.v, (v) => (v > 0 ? 1 : Number.isNaN(v) ? NaN : 0)));
    }));

  // The attention battery: odd token counts (padded pairs of tokens and score columns), inputs scaled x10 and x30,
  // one dominant key per row. Head dim 7 takes oneDNN's batched products (where oneDNN has bf16 products); head dims
  // 16, 32 and 80 (ViT-H's: 40 pairs, a partial block of 16 in the fused kernel's transposes) the fused AVX512-BF16
  // kernel where the CPU has it, else oneDNN's. The test after this one runs the same cases through oneDNN's products.
  const attentionShapes = [[2, 23, 21, 3], [3, 23, 48, 3], [2, 13, 64, 4], [1, 49, 64, 2], [1, 301, 32, 2], [2, 19, 160, 2]] as const;
  const attentionInputs = [
    ['unit inputs', 1, false],
    ['inputs x10', 10, false],
    ['inputs x30', 30, false],
    ['one dominant key per row', 1, true],
  ] as const;
  // qkv [B, N, 3D] and dout [B, N, D], bf16 values
  function attentionCase(B: number, N: number, D: number, H: number, scale: number, dominant: boolean): { qkv: Float32Array; dout: Float32Array } {
    const g = rng(4);
    const raw = randn(g, B * N * 3 * D, scale);
    if (dominant) {
      // key j = (i * 5) % N of each query row i gets a large score: q_i . k_j >> the others
      const hd = D / H;
      for (let b = 0; b < B; b++)
        for (let i = 0; i < N; i++)
          for (let h = 0; h < H; h++)
            for (let d = 0; d < hd; d++) {
              raw[(b * N + i) * 3 * D + h * hd + d] = 3;
              raw[(b * N + ((i * 5) % N)) * 3 * D + D + h * hd + d] = d % 2 ? 3 : 2.5;
            }
    }
    return { qkv: bf16(raw, [B, N, 3 * D]).v, dout: bf16(randn(g, B * N * D), [B, N, D]).v };
  }
  // out, lse and dqkv of a case against the reference. dq, dk and dv of a token are rows of their own (the largest of
  // the three would hide errors in the others), with the floor of the sums that cancel
  function expectAttention(B: number, N: number, D: number, H: number, c: { qkv: Float32Array; dout: Float32Array }, got: { out: ArrayLike<number>; lse: ArrayLike<number>; dqkv: ArrayLike<number> }, label: string): void {
    const want = ref.attention(c.qkv, B, N, D, H);
    // P (and in backward dS) is rounded to bf16 for its product (oneDNN and the fused kernel: bf16 products): an
    // output then carries two bf16 roundings, 2^-7 of its row's scale
    expectRows(got.out, want.out, D, `out ${label}`, ATT_TOL);
    // lse in float32 from exact bf16 inputs: a few float32 roundings of the row's largest |lse| (1.2e-7 measured)
    expectRows(got.lse, want.lse, N, `lse ${label}`, 5e-7, 1e-6);
    // backward takes out as given (bf16): its delta_i = dout_i . out_i is that of the rounded out, as the reference's
    // here; rows of float32 underflow (x30: gradients below 1e-38) compare to zero
    const want2 = attentionBackwardGiven(c.qkv, got.out, c.dout, B, N, D, H);
    expectRows(got.dqkv, want2.g, D, `dqkv ${label}`, ATT_TOL, want2.floor);
  }

  for (const [B, N, D, H] of attentionShapes)
  for (const [name, scale, dominant] of attentionInputs)
    it(`attention forward and backward, B ${B} N ${N} head dim ${D / H}, ${name}: fp32 softmax statistics (lse), bf16 out and dqkv`, () =>
      tidy(() => {
        const c = attentionCase(B, N, D, H, scale, dominant);
        const qkv = bf16(c.qkv, [B, N, 3 * D]);
        const [out, lse] = native.attention(qkv.t.handle, H).map(T);
        expect([out!.dtype, lse!.dtype]).toEqual(['bfloat16', 'float32']);
        const dqkv = T(native.attentionBackward(qkv.t.handle, out!.handle, bf16(c.dout, [B, N, D]).t.handle, lse!.handle, H));
        expect(dqkv.dtype).toBe('bfloat16');
        expectAttention(B, N, D, H, c, { out: out!.dataSync(), lse: lse!.dataSync(), dqkv: dqkv.dataSync() }, `(${native.info().bf16Attention})`);
      }));

  // the battery's cases of head dims that the fused kernel takes (multiples of 16), run in a child process whose
  // MAE_CPU_ATTENTION is `choice`: what it wrote (the kernel's info() name and each case's out, lse and dqkv)
  function attentionChild(choice: string, cases: { shape: readonly [number, number, number, number]; qkv: Float32Array; dout: Float32Array }[]) {
    const script = `
      const { readFileSync } = await import('node:fs');
      const { native } = await import(${JSON.stringify(new URL('../../dist/lib/native.js', import.meta.url).href)});
      const results = JSON.parse(readFileSync(0, 'utf8')).map(({ shape: [B, N, D, H], qkv, dout }) => {
        const q = native.to(native.fromArray(Float32Array.from(qkv), [B, N, 3 * D]), 'cpu', 'bfloat16');
        const g = native.to(native.fromArray(Float32Array.from(dout), [B, N, D]), 'cpu', 'bfloat16');
        try {
          const [out, lse] = native.attention(q, H);
          const dqkv = native.attentionBackward(q, out, g, lse, H);
          return { out: Array.from(out.read()), lse: Array.from(lse.read()), dqkv: Array.from(dqkv.read()) };
        } catch (e) {
          return { error: e.message };
        }
      });
      console.log(JSON.stringify({ kernel: native.info().bf16Attention, results }));`;
    const input = JSON.stringify(cases.map((c) => ({ shape: c.shape, qkv: Array.from(c.qkv), dout: Array.from(c.dout) })));
    return runChild<{ kernel: string; results: ({ out: number[]; lse: number[]; dqkv: number[] } | { error: string })[] }>(script, { MAE_CPU_ATTENTION: choice }, input);
  }
  const fusedCases = () => attentionShapes.filter(([, , D, H]) => (D / H) % 16 === 0).flatMap(([B, N, D, H]) =>
    attentionInputs.map(([name, scale, dominant]) => ({ shape: [B, N, D, H] as const, name, ...attentionCase(B, N, D, H, scale, dominant) })));
  // (MAE_CPU_AVX512=off turns the library's AVX-512 kernels off on a CPU that has them)
  const hasAvx512Bf16 = () => hasCpuFlag('avx512_bf16') && native.info().avx512Kernels === 'on';

  // in-process the default picks per shape (on AMX, heads of 128 tokens and more take oneDNN's products); each of the
  // two kernels then runs every case in a child process where the environment forces it
  for (const choice of ['onednn', 'fused'])
    it(`attention: the battery through ${choice === 'fused' ? 'the fused kernel where the CPU has AVX512-BF16' : 'oneDNN\'s products'} (MAE_CPU_ATTENTION=${choice}, in a child process), and the kernel info() names`, () => {
      expect(native.info().bf16Attention.startsWith('fused avx512_bf16')).toBe(hasAvx512Bf16());
      expect(native.info().bf16Attention.includes('on AMX')).toBe(hasAvx512Bf16() && native.info().dnnl.amx === true);
      const cases = fusedCases();
      const o = attentionChild(choice, cases);
      expect(o.kernel.startsWith('fused')).toBe(choice === 'fused' && hasAvx512Bf16());
      if (choice === 'fused') expect(o.kernel).not.toContain('AMX');
      expect(o.results.length).toBe(cases.length);
      for (const [i, c] of cases.entries()) {
        const [B, N, D, H] = c.shape;
        const r = o.results[i]!;
        if ('error' in r) throw new Error(r.error);
        expectAttention(B, N, D, H, c, r, `B ${B} N ${N} head dim ${D / H}, ${c.name} (${o.kernel})`);
      }
    });

  it('attention: MAE_CPU_ATTENTION other than fused or onednn is an error that names it (bf16 attention), and info() says so', () => {
    const cases = fusedCases().slice(0, 1);
    const o = attentionChild('fast', cases);
    expect(o.kernel).toBe('none: MAE_CPU_ATTENTION must be fused or onednn (or unset), got "fast"');
    expect(o.results[0]).toEqual({ error: 'attention: MAE_CPU_ATTENTION must be fused or onednn (or unset), got "fast"' });
  });

  it('attention forward and backward over several chunks of batch entries (scores of one entry over 1M elements)', () =>
    tidy(() => {
      const g = rng(14);
      const [B, N, D, H] = [3, 400, 32, 8]; // 8 x 400 x 400 scores per entry: one entry per chunk, three chunks
      // rows of 400 keys average many values (a small out) while P's bf16 rounding errors stay those of the values:
      // 2^-5 of the row scale here; a wrong offset of a chunk would be off by the whole scale
      const tol = 2 ** -5;
      const qkv = bf16(randn(g, B * N * 3 * D, 1), [B, N, 3 * D]);
      const [out, lse] = native.attention(qkv.t.handle, H).map(T);
      const want = ref.attention(qkv.v, B, N, D, H);
      expectRows(out!.dataSync(), want.out, D, 'out', tol);
      expectRows(lse!.dataSync(), want.lse, N, 'lse', 1e-5, 1e-5);
      const dout = bf16(randn(g, B * N * D), [B, N, D]);
      const dqkv = T(native.attentionBackward(qkv.t.handle, out!.handle, dout.t.handle, lse!.handle, H));
      expectRows(dqkv.dataSync(), attentionBackwardGiven(qkv.v, out!.dataSync(), dout.v, B, N, D, H).g, D, 'dqkv', tol, 1e-30);
    }));

  it('maskedMse (with and without normPix) and crossEntropy (labels, soft targets): float32 losses, bf16 gradients', () =>
    tidy(() => {
      const g = rng(5);
      const [B, L, P] = [3, 7, 19];
      const pred = bf16(randn(g, B * L * P), [B, L, P]);
      const target = tensor(randn(g, B * L * P), [B, L, P]);
      const m = Float32Array.from({ length: B * L }, (_, i) => (i % 3 ? 1 : 0));
      const mask = tensor(m, [B, L]);
      for (const normPix of [false, true]) {
        const loss = T(native.maskedMse(pred.t.handle, target.handle, mask.handle, normPix));
        expect(loss.dtype).toBe('float32');
        const want = ref.maskedMse(pred.v, target.dataSync(), m, B, L, P, normPix);
        expect(Math.abs(loss.item() - want.loss) / want.loss).toBeLessThan(1e-6);
        const dpred = T(native.maskedMseBackward(pred.t.handle, target.handle, mask.handle, normPix, tensor([1.5], [1]).handle));
        expect(dpred.dtype).toBe('bfloat16');
        expectRows(dpred.dataSync(), Float64Array.from(want.dpred, (v) => v * 1.5), P, 'dpred');
      }
      const [Bc, C] = [9, 13];
      const logits = bf16(randn(g, Bc * C, 4), [Bc, C]);
      const labels = Tensor.fromArray(Int32Array.from({ length: Bc }, (_, i) => (i * 7) % C), [Bc]);
      const soft = tensor(Float32Array.from({ length: Bc * C }, (_, i) => (i % C === i % 4 ? 0.25 : 0.75 / (C - 1))), [Bc, C]);
      for (const [tgt, tv] of [[labels, labels.intDataSync()], [soft, soft.dataSync()]] as const) {
        const loss = T(native.crossEntropy(logits.t.handle, tgt.handle, 0.1));
        const want = ref.crossEntropy(logits.v, tv, Bc, C, 0.1);
        expect(Math.abs(loss.item() - want.loss) / want.loss).toBeLessThan(1e-6);
        const dl = T(native.crossEntropyBackward(logits.t.handle, tgt.handle, 0.1, tensor([1], [1]).handle));
        expect(dl.dtype).toBe('bfloat16');
        expectRows(dl.dataSync(), want.dlogits, C, 'dlogits');
      }
    }));

  it('token plumbing, elementwise ops, reductions, batchNorm and patches', () =>
    tidy(() => {
      const g = rng(6);
      const [B, N, D] = [3, 11, 13];
      const x = bf16(randn(g, B * N * D), [B, N, D]);
      const idx = Int32Array.from({ length: B * 5 }, (_, i) => (i * 7 + 3) % N);
      const it = Tensor.fromArray(idx, [B, 5]);
      const gth = T(native.gatherRows(x.t.handle, it.handle));
      expect(gth.dtype).toBe('bfloat16');
      expect(Array.from(gth.dataSync())).toEqual(Array.from(ref.gatherRows(x.v, idx, B, N, D, 5)));
      const dyg = bf16(randn(g, B * 5 * D), [B, 5, D]);
      expectRows(T(native.scatterAddRows(dyg.t.handle, it.handle, N)).dataSync(), ref.scatterAddRows(dyg.v, idx, B, 5, D, N), D, 'scatterAddRows');
      // a float32 cls token joining bf16 tokens: the result is bf16, the cls row rounded once
      const cls = tensor(randn(g, D), [1, 1, D]);
      const cat = T(native.catTokens(cls.handle, x.t.handle));
      expect(cat.dtype).toBe('bfloat16');
      expectRows(cat.dataSync(), ref.catTokens(cls.dataSync(), 1, 1, x.v, B, N, D), D, 'catTokens');
      expect(Array.from(T(native.sliceTokens(x.t.handle, 2, 5)).dataSync())).toEqual(Array.from(ref.sliceTokens(x.v, B, N, D, 2, 5)));
      // a float32 position table over bf16 tokens
      const pos = tensor(randn(g, N * D), [1, N, D]);
      expectRows(T(native.add(x.t.handle, pos.handle)).dataSync(), ref.add(x.v, pos.dataSync()), D, 'add');
      expectRows(T(native.mul(x.t.handle, pos.handle)).dataSync(), ref.mul(x.v, pos.dataSync()), D, 'mul');
      const st = T(native.sumTo(x.t.handle, [1, N, D]));
      expect(st.dtype).toBe('float32');
      expectRows(st.dataSync(), ref.sumTo(x.v, N * D), D, 'sumTo', 1e-6);
      expect(Math.abs(T(native.sum(x.t.handle, 0.5)).item() - 0.5 * ref.sumAll(x.v))).toBeLessThan(1e-4);
      const mt = T(native.meanTokens(x.t.handle));
      expectRows(mt.dataSync(), ref.meanTokens(x.v, B, N, D), D, 'meanTokens');
      const mb = T(native.meanTokensBackward(mt.handle, N));
      expectRows(mb.dataSync(), Float64Array.from({ length: B * N * D }, (_, i) => mt.dataSync()[Math.floor(i / (N * D)) * D + (i % D)]! / N), D, 'meanTokensBackward');
      // axpby in place on a bf16 y, and fill
      const y = bf16(randn(g, B * N * D), [B, N, D]);
      native.axpby(0.5, x.t.handle, 2, y.t.handle);
      expectRows(y.t.dataSync(), Float64Array.from(x.v, (v, i) => 0.5 * v + 2 * y.v[i]!), D, 'axpby');
      native.fill(y.t.handle, 1 / 3);
      expect(new Set(y.t.dataSync())).toEqual(new Set([0.333984375]));
      // batchNorm over bf16 features
      const f = bf16(randn(g, 7 * 5, 2), [7, 5]);
      const rm = tensor(new Float32Array(5), [5]);
      const rv = tensor(new Float32Array(5).fill(1), [5]);
      const [bn, rs] = native.batchNorm(f.t.handle, rm.handle, rv.handle, true, 0.1, 1e-6).map(T);
      const want = ref.batchNorm(f.v, 7, 5, new Float64Array(5), new Float64Array(5).fill(1), true, 0.1, 1e-6);
      expectRows(bn!.dataSync(), want.y, 5, 'batchNorm');
      const dyb = bf16(randn(g, 35), [7, 5]);
      // backward from the y it is given (bf16): dx = rstd (dy - mean_B dy - y mean_B(dy y))
      const yv = bn!.dataSync();
      const rsv = rs!.dataSync();
      const wantDx = new Float64Array(35);
      for (let c = 0; c < 5; c++) {
        let m1 = 0;
        let m2 = 0;
        for (let r = 0; r < 7; r++) {
          m1 += dyb.v[r * 5 + c]! / 7;
          m2 += (dyb.v[r * 5 + c]! * yv[r * 5 + c]!) / 7;
        }
        for (let r = 0; r < 7; r++) wantDx[r * 5 + c] = rsv[c]! * (dyb.v[r * 5 + c]! - m1 - yv[r * 5 + c]! * m2);
      }
      expectRows(T(native.batchNormBackward(dyb.t.handle, bn!.handle, rs!.handle, true)).dataSync(), wantDx, 5, 'batchNorm dx');
      // patches are a permutation: exact
      const imgs = bf16(randu(g, 2 * 3 * 12 * 8), [2, 3, 12, 8]);
      for (const hwc of [true, false]) {
        const p = T(native.patchify(imgs.t.handle, 4, hwc));
        expect(p.dtype).toBe('bfloat16');
        expect(Array.from(p.dataSync())).toEqual(Array.from(ref.patchify(imgs.v, 2, 3, 12, 8, 4, hwc ? 'hwc' : 'chw')));
        expect(Array.from(T(native.unpatchify(p.handle, 4, hwc, [3, 12, 8])).dataSync())).toEqual(Array.from(imgs.v));
      }
    }));

  it('refuses bf16 where a kernel takes only float32 (parameters, statistics, masks), naming the argument', () =>
    tidy(() => {
      const x = tensor(randn(rng(7), 8), [2, 4]);
      const xb = bf16(x.dataSync(), [2, 4]);
      expect(() => native.layerNorm(x.handle, xb.t.handle.reshape([8]), tensor([0, 0, 0, 0, 0, 0, 0, 0], [8]).handle, 1e-6)).toThrow(
        /weight must be float32, got bfloat16 \[8\] on the CPU: CPU kernels take bfloat16 only for activations/,
      );
      const pred = bf16(randn(rng(8), 2 * 3 * 4), [2, 3, 4]);
      expect(() => native.maskedMse(pred.t.handle, pred.t.handle, bf16([1, 0, 1, 0, 1, 0], [2, 3]).t.handle, false)).toThrow(/mask must be float32, got bfloat16/);
      expect(() => native.linear(xb.t.handle, xb.t.handle, null)).toThrow(/weight must be float32, got bfloat16/);
    }));
});

/** whether this CPU has AVX-512 (for the case that limits oneDNN to it) */
const hasAvx512 = hasCpuFlag('avx512f');

describe('bf16 products on CPUs without native bf16', () => {
  // The same products (a Linear's three, and attention forward and backward) in a process where oneDNN may use
  // AVX-512 but not AVX512-BF16 or AMX (it would emulate bf16, slower than the BLAS in float32), one where it has no
  // bf16 kernel (DNNL_MAX_CPU_ISA=AVX2: oneDNN 2.x has none below AVX-512, as on an AVX2-only CPU), and one where
  // oneDNN is not found: all three run on the BLAS fallback and attention's float32 tiles, so they agree bit for bit
  const script = `
    const { native } = await import(${JSON.stringify(new URL('../../dist/lib/native.js', import.meta.url).href)});
    const r = (n, s) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37 + s));
    const [M, K, N] = [33, 20, 17];
    const x = native.to(native.fromArray(r(M * K, 1), [M, K]), 'cpu', 'bfloat16');
    const w = native.fromArray(r(N * K, 2), [N, K]);
    const dy = native.to(native.fromArray(r(M * N, 3), [M, N]), 'cpu', 'bfloat16');
    const y = native.linear(x, w, null);
    const [dx, dw] = native.linearBackward(x, w, dy, true, false);
    const qkv = native.to(native.fromArray(r(2 * 9 * 36, 4), [2, 9, 36]), 'cpu', 'bfloat16');
    const dout = native.to(native.fromArray(r(2 * 9 * 12, 5), [2, 9, 12]), 'cpu', 'bfloat16');
    const [out, lse] = native.attention(qkv, 2);
    const dqkv = native.attentionBackward(qkv, out, dout, lse, 2);
    // a shadow AdamW wrote: its products go through the layouts this oneDNN asks for (blocked.cpp)
    const shadow = native.to(w, 'cpu', 'bfloat16');
    const z = () => native.fromArray(new Float32Array(N * K), [N, K]);
    native.adamwStep([w], [native.fromArray(r(N * K, 6), [N, K])], [z()], [z()], [0.5], [0], 0.9, 0.95, 1e-8, 1, [shadow]);
    const ys = native.linear(x, w, null, shadow), dxs = native.linearBackward(x, w, dy, true, false, shadow)[0];
    const d = native.info().dnnl;
    console.log(JSON.stringify({ dnnl: d, blocked: native.memoryStats().blockedWeightBytes, ws: Array.from(shadow.read()), ys: Array.from(ys.read()), dxs: Array.from(dxs.read()),
      x: Array.from(x.read()), w: Array.from(native.to(native.fromArray(r(N * K, 2), [N, K]), 'cpu', 'bfloat16').read()), dy: Array.from(dy.read()),
      y: Array.from(y.read()), dx: Array.from(dx.read()), dw: Array.from(dw.read()), dtypes: [y.dtype, dx.dtype, dw.dtype],
      qkv: Array.from(qkv.read()), dout: Array.from(dout.read()), out: Array.from(out.read()), dqkv: Array.from(dqkv.read()) }));`;
  // no blocked copies are made: no product goes to oneDNN
  const notFound = { MAE_DNNL_LIB: '/nonexistent/libdnnl.so.2' };
  let blas: any = null;
  for (const [name, env, want] of [
    ['oneDNN not found', notFound, { available: false, bf16Products: false }],
    // (a CPU without AVX-512 stays below it: no bf16 kernel at all)
    ['oneDNN that would emulate bf16 on AVX-512', { DNNL_MAX_CPU_ISA: 'AVX512_CORE', ONEDNN_MAX_CPU_ISA: 'AVX512_CORE' }, hasAvx512 ? { available: true, isa: 'avx512_core', bf16Native: false, bf16Matmul: true, bf16Products: false } : { available: true, bf16Native: false, bf16Products: false }],
    ['oneDNN without a bf16 kernel (AVX2)', { DNNL_MAX_CPU_ISA: 'AVX2', ONEDNN_MAX_CPU_ISA: 'AVX2' }, { available: true, isa: 'avx2', bf16Native: false, bf16Matmul: false, bf16Products: false }],
  ] as const)
    it(`give the same products: ${name}`, () => {
      const o = runChild<any>(script, env);
      expect(o.dnnl).toMatchObject(want);
      expect(o.blocked).toBe(0);
      blas ??= env === notFound ? o : runChild<any>(script, notFound);
      for (const k of ['y', 'dx', 'dw', 'ys', 'dxs', 'out', 'dqkv']) expect(o[k], `${k}: the bits of the run without oneDNN`).toEqual(blas[k]);
      expect(o.dtypes).toEqual(['bfloat16', 'bfloat16', 'float32']);
      const [M, K, N] = [33, 20, 17];
      const r = ref.linearBackward(o.x, o.w, o.dy, M, K, N);
      expectRows(o.y, ref.linear(o.x, o.w, null, M, K, N), N, 'y');
      expectRows(o.dx, r.dx, K, 'dx');
      expectRows(o.dw, r.dw, K, 'dW', 1e-5);
      expectRows(o.ys, ref.linear(o.x, o.ws, null, M, K, N), N, 'y with a shadow AdamW wrote');
      expectRows(o.dxs, ref.linearBackward(o.x, o.ws, o.dy, M, K, N).dx, K, 'dx with a shadow AdamW wrote');
      // attention: the float32 tiles
      expectRows(o.out, ref.attention(o.qkv, 2, 9, 12, 2).out, 12, 'attention out', ATT_TOL);
      expectRows(o.dqkv, attentionBackwardGiven(o.qkv, o.out, o.dout, 2, 9, 12, 2).g, 36, 'attention dqkv', ATT_TOL, 1e-30);
    });
});
