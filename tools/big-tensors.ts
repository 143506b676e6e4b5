/**
 * The kernels on tensors of more than 2^31 elements, where an index kept in 32 bits would wrap: not in the test suite
 * (it needs about 15 GB of memory and a minute on 2 cores), run by hand after changing a kernel's indexing:
 *   node dist/tools/big-tensors.js
 * - linear and its backward, fp32 (the BLAS) and bf16 (oneDNN), y [65536, 32769] (2^31 + 65536 elements): the
 *   forward's rows at the start, middle and end (the last rows lie past element 2^31) against the sums in float64 of
 *   small integers (exact in both dtypes), dx, dW and db on a sample of rows and columns;
 * - attention (forward and backward), LayerNorm (forward and backward) and biasGelu in bf16 on qkv [32768, 16, 4098]: each
 *   sampled batch of the big call against the same batch computed alone, which must agree bit for bit (the rows'
 *   arithmetic does not depend on where they lie).
 * Prints what it compared and exits 1 on any difference.
 */
import { native, type NativeTensor } from '../lib/native.js';

let failures = 0;
const seconds = (t: number) => `${((performance.now() - t) / 1000).toFixed(1)} s`;
const report = (what: string, compared: number, worst: number, limit: number) => {
  const ok = worst <= limit;
  if (!ok) failures++;
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}: ${compared} values compared, largest difference ${worst}${limit ? ` (allowed ${limit})` : ''}`);
};
/** rows [start, start + count) of a [rows, width] tensor, read to the host without copying the rest */
const readRows = (t: NativeTensor, rows: number, width: number, start: number, count: number): Float32Array => {
  const view = t.reshape([1, rows, width]);
  const part = native.sliceTokens(view, start, count);
  const data = part.read() as Float32Array;
  view.dispose();
  part.dispose();
  return data;
};

function linearCheck(dtype: 'float32' | 'bfloat16'): void {
  const [M, N, K] = [65536, 32769, 64];
  const x = new Float32Array(M * K).map((_, i) => ((i * 7) % 5) - 2);
  const w = new Float32Array(N * K).map((_, i) => ((i * 5) % 3) - 1);
  const b = new Float32Array(N).map((_, i) => i % 3);
  const x32 = native.fromArray(x, [M, K]);
  const xh = dtype === 'float32' ? x32 : native.to(x32, 'cpu', 'bfloat16');
  const wh = native.fromArray(w, [N, K]);
  const bh = native.fromArray(b, [N]);
  const ref = (i: number, j: number) => {
    let s = b[j]!;
    for (let k = 0; k < K; k++) s += x[i * K + k]! * w[j * K + k]!;
    return s;
  };
  let t = performance.now();
  const y = native.linear(xh, wh, bh, null);
  console.log(`linear ${dtype}: y [${y.shape.join(', ')}], ${M * N} elements, ${seconds(t)}`);
  let worst = 0;
  let compared = 0;
  for (const start of [0, 20000, 40000, 65500, M - 8]) {
    const d = readRows(y, M, N, start, 8);
    for (let r = 0; r < 8; r++) for (let j = 0; j < N; j++, compared++) worst = Math.max(worst, Math.abs(d[r * N + j]! - ref(start + r, j)));
  }
  report(`linear ${dtype} forward`, compared, worst, 0);
  // the backward of y itself as dy: db[j] = sum_i y[i, j], dW[j] = sum_i y[i, j] x[i], dx[i] = sum_j y[i, j] w[j]
  t = performance.now();
  const [dx, dw, db] = native.linearBackward(xh, wh, y, true, true, null);
  console.log(`linear ${dtype} backward: ${seconds(t)}`);
  const [dxd, dwd, dbd] = [dx!, dw!, db!].map((h) => h.read() as Float32Array) as [Float32Array, Float32Array, Float32Array];
  let rel = 0;
  compared = 0;
  const relErr = (got: number, want: number) => Math.abs(got - want) / Math.max(1, Math.abs(want));
  for (let j = 0; j < N; j += 97) {
    let s = 0;
    let s0 = 0;
    for (let i = 0; i < M; i++) {
      const v = ref(i, j);
      s += v;
      s0 += v * x[i * K]!;
    }
    rel = Math.max(rel, relErr(dbd[j]!, s), relErr(dwd[j * K]!, s0));
    compared += 2;
  }
  for (const i of [0, 331, 40000, M - 1]) {
    let s = 0;
    for (let j = 0; j < N; j++) s += ref(i, j) * w[j * K + K - 1]!;
    rel = Math.max(rel, relErr(dxd[i * K + K - 1]!, s));
    compared++;
  }
  // float32 sums of 32769 or 65536 terms, and in bf16 dx rounded to 8 bits (half an ulp: 2^-9)
  report(`linear ${dtype} backward (relative)`, compared, rel, dtype === 'float32' ? 1e-4 : 4e-3);
  for (const h of new Set([x32, xh, wh, bh, y, dx!, dw!, db!])) h.dispose();
}

function rowKernelsCheck(): void {
  const [B, N, D, H] = [32768, 16, 1366, 2];
  const W = 3 * D;
  // qkv's rows are drawn from R distinct rows, so that any batch can be rebuilt alone
  const R = 997;
  const p32 = native.fromArray(new Float32Array(R * W).map((_, i) => Math.sin(i * 0.37) * 2), [1, R, W]);
  const pattern = native.to(p32, 'cpu', 'bfloat16');
  p32.dispose();
  const rowOf = new Int32Array(B * N).map((_, i) => (i * 7919 + (i >> 4) * 31) % R);
  const gather = (from: number, count: number) => {
    const index = native.fromArray(rowOf.slice(from, from + count), [1, count]);
    const rows = native.gatherRows(pattern, index);
    index.dispose();
    return rows;
  };
  let t = performance.now();
  const qkv = gather(0, B * N).reshape([B, N, W]);
  console.log(`bf16 qkv [${qkv.shape.join(', ')}], ${B * N * W} elements, made in ${seconds(t)}`);
  t = performance.now();
  const [out, lse] = native.attention(qkv, H);
  const dqkv = native.attentionBackward(qkv, out!, out!, lse!, H);
  console.log(`attention forward and backward: ${seconds(t)}`);
  let worst = 0;
  let compared = 0;
  const compare = (a: Float32Array, b: Float32Array) => {
    for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
    compared += a.length;
  };
  // the batch that holds element 2^31 of qkv, its neighbours, and others from the first to the last
  const past = Math.floor(2 ** 31 / (N * W));
  const batches = [0, 1, 12345, past - 1, past, past + 1, B - 2, B - 1];
  for (const b of batches) {
    const q1 = gather(b * N, N).reshape([1, N, W]);
    const [o1, l1] = native.attention(q1, H);
    const d1 = native.attentionBackward(q1, o1!, o1!, l1!, H);
    compare(readRows(out!, B * N, D, b * N, N), o1!.read() as Float32Array);
    compare(readRows(dqkv, B * N, W, b * N, N), d1.read() as Float32Array);
    for (const h of [q1, o1!, l1!, d1]) h.dispose();
  }
  report('attention bf16 forward and backward, batch by batch', compared, worst, 0);
  for (const h of [out!, lse!, dqkv]) h.dispose();

  const x = qkv.reshape([B * N, W]);
  const weight = native.fromArray(new Float32Array(W).map((_, i) => 1 + 0.01 * (i % 7)), [W]);
  const bias = native.fromArray(new Float32Array(W).map((_, i) => 0.1 * (i % 5) - 0.2), [W]);
  t = performance.now();
  const [y, mean, rstd] = native.layerNorm(x, weight, bias, 1e-6);
  const [dx, dw, db] = native.layerNormBackward(y!, x, weight, mean!, rstd!);
  console.log(`layerNorm forward and backward: ${seconds(t)}`);
  worst = 0;
  compared = 0;
  for (const b of batches) {
    const x1 = gather(b * N, N).reshape([N, W]);
    const [y1, m1, r1] = native.layerNorm(x1, weight, bias, 1e-6);
    const [dx1, dw1, db1] = native.layerNormBackward(y1!, x1, weight, m1!, r1!);
    compare(readRows(y!, B * N, W, b * N, N), y1!.read() as Float32Array);
    compare(readRows(dx!, B * N, W, b * N, N), dx1!.read() as Float32Array);
    for (const h of [x1, y1!, m1!, r1!, dx1!, dw1!, db1!]) h.dispose();
  }
  report('layerNorm bf16 forward and backward, row by row', compared, worst, 0);
  for (const h of [y!, mean!, rstd!, dx!, dw!, db!]) h.dispose();
  t = performance.now();
  const g = native.biasGelu(x, bias);
  console.log(`biasGelu: ${seconds(t)}`);
  worst = 0;
  compared = 0;
  for (const b of batches) {
    const x1 = gather(b * N, N).reshape([N, W]);
    const g1 = native.biasGelu(x1, bias);
    compare(readRows(g, B * N, W, b * N, N), g1.read() as Float32Array);
    for (const h of [x1, g1]) h.dispose();
  }
  report('biasGelu bf16, row by row', compared, worst, 0);
  for (const h of [pattern, qkv, x, weight, bias, g]) h.dispose();
}

// each check frees its tensors; the allocator's cache of their blocks goes back to the system before the next
for (const check of [() => linearCheck('float32'), () => linearCheck('bfloat16'), rowKernelsCheck]) {
  check();
  native.emptyCache();
}
console.log(`peak of the native allocator: ${(native.memoryStats().peakBytes / 2 ** 30).toFixed(1)} GiB`);
if (failures) {
  console.error(`${failures} check(s) failed`);
  process.exit(1);
}
