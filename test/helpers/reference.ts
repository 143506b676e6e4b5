// Plain double-precision reference implementations of every op, written from the definitions (native/core/ops.h
// and the MAE spec), not from the kernels. Inputs are any arrays of numbers (typically the exact float32 values the
// op under test received); outputs are Float64Array. Shapes are passed explicitly, row-major and contiguous.
export type Arr = ArrayLike<number>;

const SQRT_PI = Math.sqrt(Math.PI);

// ---- gemm --------------------------------------------------------------------------------------------------------

/** y = x W^T + b: x [rows, K], w [N, K], b [N] or null -> y [rows, N]. */
export function linear(x: Arr, w: Arr, b: Arr | null, rows: number, K: number, N: number): Float64Array {
  const y = new Float64Array(rows * N);
  for (let r = 0; r < rows; r++)
    for (let n = 0; n < N; n++) {
      let s = b ? b[n]! : 0;
      for (let k = 0; k < K; k++) s += x[r * K + k]! * w[n * K + k]!;
      y[r * N + n] = s;
    }
  return y;
}

/** The gradients of linear for an output gradient dy [rows, N]. */
export function linearBackward(
  x: Arr,
  w: Arr,
  dy: Arr,
  rows: number,
  K: number,
  N: number,
): { dx: Float64Array; dw: Float64Array; db: Float64Array } {
  const dx = new Float64Array(rows * K);
  const dw = new Float64Array(N * K);
  const db = new Float64Array(N);
  for (let r = 0; r < rows; r++)
    for (let n = 0; n < N; n++) {
      const g = dy[r * N + n]!;
      db[n] = db[n]! + g;
      for (let k = 0; k < K; k++) {
        dx[r * K + k] = dx[r * K + k]! + g * w[n * K + k]!;
        dw[n * K + k] = dw[n * K + k]! + g * x[r * K + k]!;
      }
    }
  return { dx, dw, db };
}

// ---- layernorm ---------------------------------------------------------------------------------------------------

/** LayerNorm over the last dim with the biased variance: x [rows, D], w, b [D]. */
export function layerNorm(
  x: Arr,
  w: Arr,
  b: Arr,
  rows: number,
  D: number,
  eps: number,
): { y: Float64Array; mean: Float64Array; rstd: Float64Array } {
  const y = new Float64Array(rows * D);
  const mean = new Float64Array(rows);
  const rstd = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let i = 0; i < D; i++) s += x[r * D + i]!;
    const m = s / D;
    let v = 0;
    for (let i = 0; i < D; i++) v += (x[r * D + i]! - m) ** 2;
    const rs = 1 / Math.sqrt(v / D + eps);
    for (let i = 0; i < D; i++) y[r * D + i] = (x[r * D + i]! - m) * rs * w[i]! + b[i]!;
    mean[r] = m;
    rstd[r] = rs;
  }
  return { y, mean, rstd };
}

/** Analytic LayerNorm gradients for dy [rows, D]. */
export function layerNormBackward(
  x: Arr,
  w: Arr,
  dy: Arr,
  rows: number,
  D: number,
  eps: number,
): { dx: Float64Array; dw: Float64Array; db: Float64Array } {
  const { mean, rstd } = layerNorm(x, w, new Float64Array(D), rows, D, eps);
  const dx = new Float64Array(rows * D);
  const dw = new Float64Array(D);
  const db = new Float64Array(D);
  for (let r = 0; r < rows; r++) {
    const m = mean[r]!;
    const rs = rstd[r]!;
    // d/dxhat = dy * w; dx = rs * (g - mean(g) - xhat * mean(g * xhat))
    let sg = 0;
    let sgx = 0;
    for (let i = 0; i < D; i++) {
      const xhat = (x[r * D + i]! - m) * rs;
      const g = dy[r * D + i]! * w[i]!;
      sg += g;
      sgx += g * xhat;
      dw[i] = dw[i]! + dy[r * D + i]! * xhat;
      db[i] = db[i]! + dy[r * D + i]!;
    }
    for (let i = 0; i < D; i++) {
      const xhat = (x[r * D + i]! - m) * rs;
      dx[r * D + i] = rs * (dy[r * D + i]! * w[i]! - sg / D - (xhat * sgx) / D);
    }
  }
  return { dx, dw, db };
}

// ---- erf and gelu ------------------------------------------------------------------------------------------------

/** erfc(x) for x >= 2 by its continued fraction, evaluated backwards: e^{-x^2}/sqrt(pi) / (x + (1/2)/(x + 1/(x + ...))). */
function erfcLarge(x: number): number {
  let t = x;
  for (let n = 400; n >= 1; n--) t = x + n / 2 / t;
  return Math.exp(-x * x) / (SQRT_PI * t);
}

/** erf in double precision (about 1e-15 absolute): a series of positive terms below 2.5, a continued fraction above. */
export function erf(x: number): number {
  if (Number.isNaN(x)) return NaN;
  const ax = Math.abs(x);
  let r: number;
  if (ax < 2.5) {
    // erf(x) = 2/sqrt(pi) e^{-x^2} sum_n x (2x^2)^n / (1 * 3 * ... * (2n + 1))
    let term = ax;
    let sum = ax;
    const x2 = 2 * ax * ax;
    for (let n = 1; n < 500; n++) {
      term *= x2 / (2 * n + 1);
      sum += term;
      if (term <= 1e-18 * sum) break;
    }
    r = (2 / SQRT_PI) * Math.exp(-ax * ax) * sum;
  } else {
    r = 1 - erfcLarge(ax);
  }
  return x < 0 ? -r : r;
}

/** erfc(x) = 1 - erf(x), accurate in the tail. */
export function erfc(x: number): number {
  return x >= 2.5 ? erfcLarge(x) : 1 - erf(x);
}

/** Exact GELU: x Phi(x) = 0.5 x (1 + erf(x / sqrt 2)). */
export function gelu(x: Arr): Float64Array {
  const y = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) y[i] = 0.5 * x[i]! * (1 + erf(x[i]! / Math.SQRT2));
  return y;
}

/** d gelu / dx = Phi(x) + x phi(x). */
export function geluGrad(x: Arr): Float64Array {
  const y = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const v = x[i]!;
    y[i] = 0.5 * (1 + erf(v / Math.SQRT2)) + (v * Math.exp(-0.5 * v * v)) / Math.sqrt(2 * Math.PI);
  }
  return y;
}

// ---- attention ---------------------------------------------------------------------------------------------------

/**
 * Multi-head self-attention on packed qkv [B, N, 3D]: q, k, v are the column blocks 0..D, D..2D, 2D..3D; head h
 * owns columns h*hd .. h*hd+hd of each block. S = q k^T hd^-0.5, P = softmax rows, out = P v -> [B, N, D] with
 * the heads merged. Also returns P [B, H, N, N] and the log-sum-exp of S [B, H, N].
 */
export function attention(
  qkv: Arr,
  B: number,
  N: number,
  D: number,
  H: number,
): { out: Float64Array; P: Float64Array; lse: Float64Array } {
  const hd = D / H;
  const scale = 1 / Math.sqrt(hd);
  const out = new Float64Array(B * N * D);
  const P = new Float64Array(B * H * N * N);
  const lse = new Float64Array(B * H * N);
  const at = (b: number, i: number, col: number): number => qkv[(b * N + i) * 3 * D + col]!;
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++)
      for (let i = 0; i < N; i++) {
        const s = new Float64Array(N);
        let m = -Infinity;
        for (let j = 0; j < N; j++) {
          let dot = 0;
          for (let d = 0; d < hd; d++) dot += at(b, i, h * hd + d) * at(b, j, D + h * hd + d);
          s[j] = dot * scale;
          m = Math.max(m, s[j]!);
        }
        let z = 0;
        for (let j = 0; j < N; j++) z += Math.exp(s[j]! - m);
        lse[(b * H + h) * N + i] = m + Math.log(z);
        for (let j = 0; j < N; j++) {
          const p = Math.exp(s[j]! - m) / z;
          P[((b * H + h) * N + i) * N + j] = p;
          for (let d = 0; d < hd; d++) {
            const o = (b * N + i) * D + h * hd + d;
            out[o] = out[o]! + p * at(b, j, 2 * D + h * hd + d);
          }
        }
      }
  return { out, P, lse };
}

/** Analytic gradient of attention for dout [B, N, D] -> dqkv [B, N, 3D]. */
export function attentionBackward(qkv: Arr, dout: Arr, B: number, N: number, D: number, H: number): Float64Array {
  const hd = D / H;
  const scale = 1 / Math.sqrt(hd);
  const { P } = attention(qkv, B, N, D, H);
  const dqkv = new Float64Array(B * N * 3 * D);
  const at = (b: number, i: number, col: number): number => qkv[(b * N + i) * 3 * D + col]!;
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++) {
      const p = (i: number, j: number): number => P[((b * H + h) * N + i) * N + j]!;
      for (let i = 0; i < N; i++) {
        // dP_ij = dout_i . v_j; dS_ij = P_ij (dP_ij - sum_k P_ik dP_ik)
        const dP = new Float64Array(N);
        for (let j = 0; j < N; j++) {
          let s = 0;
          for (let d = 0; d < hd; d++) s += dout[(b * N + i) * D + h * hd + d]! * at(b, j, 2 * D + h * hd + d);
          dP[j] = s;
        }
        let rowsum = 0;
        for (let j = 0; j < N; j++) rowsum += p(i, j) * dP[j]!;
        for (let j = 0; j < N; j++) {
          const dS = p(i, j) * (dP[j]! - rowsum);
          for (let d = 0; d < hd; d++) {
            // q_i gets dS k_j scale; k_j gets dS q_i scale; v_j gets P_ij dout_i
            const qi = (b * N + i) * 3 * D + h * hd + d;
            const kj = (b * N + j) * 3 * D + D + h * hd + d;
            const vj = kj + D;
            dqkv[qi] = dqkv[qi]! + dS * at(b, j, D + h * hd + d) * scale;
            dqkv[kj] = dqkv[kj]! + dS * at(b, i, h * hd + d) * scale;
            dqkv[vj] = dqkv[vj]! + p(i, j) * dout[(b * N + i) * D + h * hd + d]!;
          }
        }
      }
    }
  return dqkv;
}

// ---- losses ------------------------------------------------------------------------------------------------------

/** The target patches, normalised per patch by mean and unbiased variance (eps 1e-6) when normPix. */
export function normTarget(target: Arr, rows: number, P: number, normPix: boolean): Float64Array {
  const t = Float64Array.from(target);
  if (!normPix) return t;
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let k = 0; k < P; k++) s += target[r * P + k]!;
    const m = s / P;
    let v = 0;
    for (let k = 0; k < P; k++) v += (target[r * P + k]! - m) ** 2;
    v /= P - 1;
    for (let k = 0; k < P; k++) t[r * P + k] = (target[r * P + k]! - m) / Math.sqrt(v + 1e-6);
  }
  return t;
}

/**
 * The MAE loss: pred, target [B, L, P], mask [B, L] (1 = removed). per_patch = mean_P (pred - t)^2;
 * loss = sum(per_patch * mask) / sum(mask), or the mean over all patches when the mask is all zeros.
 * Also the gradient with respect to pred for dloss = 1.
 */
export function maskedMse(
  pred: Arr,
  target: Arr,
  mask: Arr,
  B: number,
  L: number,
  P: number,
  normPix: boolean,
): { loss: number; dpred: Float64Array } {
  const t = normTarget(target, B * L, P, normPix);
  let msum = 0;
  for (let i = 0; i < B * L; i++) msum += mask[i]!;
  const all = msum === 0;
  const w = (i: number): number => (all ? 1 / (B * L) : mask[i]! / msum);
  let loss = 0;
  const dpred = new Float64Array(B * L * P);
  for (let i = 0; i < B * L; i++) {
    let e = 0;
    for (let k = 0; k < P; k++) e += (pred[i * P + k]! - t[i * P + k]!) ** 2;
    loss += (w(i) * e) / P;
    for (let k = 0; k < P; k++) dpred[i * P + k] = (w(i) * 2 * (pred[i * P + k]! - t[i * P + k]!)) / P;
  }
  return { loss, dpred };
}

/**
 * Softmax cross-entropy, mean over the batch. target: Int32Array labels [B] or soft targets [B, C] (any other
 * array). Smoothing s: q = (1 - s) t + s / C. Also the gradient with respect to the logits for dloss = 1.
 */
export function crossEntropy(
  logits: Arr,
  target: Int32Array | Arr,
  B: number,
  C: number,
  smoothing: number,
): { loss: number; dlogits: Float64Array } {
  let loss = 0;
  const dlogits = new Float64Array(B * C);
  for (let b = 0; b < B; b++) {
    const q = new Float64Array(C);
    for (let c = 0; c < C; c++) {
      const t = target instanceof Int32Array ? (target[b] === c ? 1 : 0) : target[b * C + c]!;
      q[c] = (1 - smoothing) * t + smoothing / C;
    }
    let m = -Infinity;
    for (let c = 0; c < C; c++) m = Math.max(m, logits[b * C + c]!);
    let z = 0;
    for (let c = 0; c < C; c++) z += Math.exp(logits[b * C + c]! - m);
    const lse = m + Math.log(z);
    let qs = 0;
    for (let c = 0; c < C; c++) {
      loss += q[c]! * (lse - logits[b * C + c]!);
      qs += q[c]!;
    }
    for (let c = 0; c < C; c++) dlogits[b * C + c] = (Math.exp(logits[b * C + c]! - lse) * qs - q[c]!) / B;
  }
  return { loss: loss / B, dlogits };
}

// ---- batchnorm ---------------------------------------------------------------------------------------------------

/**
 * BatchNorm1d without affine over x [B, F]. Training: batch mean and biased variance normalise; the running
 * statistics become (1 - momentum) running + momentum (mean, unbiased var). Eval: the running statistics normalise.
 */
export function batchNorm(
  x: Arr,
  B: number,
  F: number,
  runningMean: Arr,
  runningVar: Arr,
  training: boolean,
  momentum: number,
  eps: number,
): { y: Float64Array; runningMean: Float64Array; runningVar: Float64Array } {
  const y = new Float64Array(B * F);
  const rm = Float64Array.from(runningMean);
  const rv = Float64Array.from(runningVar);
  for (let f = 0; f < F; f++) {
    let mean: number;
    let varb: number;
    if (training) {
      let s = 0;
      for (let b = 0; b < B; b++) s += x[b * F + f]!;
      mean = s / B;
      let v = 0;
      for (let b = 0; b < B; b++) v += (x[b * F + f]! - mean) ** 2;
      varb = v / B;
      rm[f] = (1 - momentum) * rm[f]! + momentum * mean;
      rv[f] = (1 - momentum) * rv[f]! + momentum * (v / (B - 1));
    } else {
      mean = runningMean[f]!;
      varb = runningVar[f]!;
    }
    for (let b = 0; b < B; b++) y[b * F + f] = (x[b * F + f]! - mean) / Math.sqrt(varb + eps);
  }
  return { y, runningMean: rm, runningVar: rv };
}

/** Analytic batchNorm gradient for dy [B, F]: through the batch statistics in training, a plain scale in eval. */
export function batchNormBackward(
  x: Arr,
  dy: Arr,
  B: number,
  F: number,
  runningVar: Arr,
  training: boolean,
  eps: number,
): Float64Array {
  const dx = new Float64Array(B * F);
  for (let f = 0; f < F; f++) {
    if (!training) {
      for (let b = 0; b < B; b++) dx[b * F + f] = dy[b * F + f]! / Math.sqrt(runningVar[f]! + eps);
      continue;
    }
    let s = 0;
    for (let b = 0; b < B; b++) s += x[b * F + f]!;
    const mean = s / B;
    let v = 0;
    for (let b = 0; b < B; b++) v += (x[b * F + f]! - mean) ** 2;
    const rstd = 1 / Math.sqrt(v / B + eps);
    // y = (x - mean) rstd: dx = rstd (dy - mean(dy) - y mean(dy y))
    let mdy = 0;
    let mdyy = 0;
    for (let b = 0; b < B; b++) {
      const y = (x[b * F + f]! - mean) * rstd;
      mdy += dy[b * F + f]! / B;
      mdyy += (dy[b * F + f]! * y) / B;
    }
    for (let b = 0; b < B; b++) {
      const y = (x[b * F + f]! - mean) * rstd;
      dx[b * F + f] = rstd * (dy[b * F + f]! - mdy - y * mdyy);
    }
  }
  return dx;
}

// ---- tokens ------------------------------------------------------------------------------------------------------

/** y[b, k] = x[b, idx[b, k]]: x [B, N, D], idx [B, K] -> [B, K, D]. */
export function gatherRows(x: Arr, idx: Arr, B: number, N: number, D: number, K: number): Float64Array {
  const y = new Float64Array(B * K * D);
  for (let b = 0; b < B; b++)
    for (let k = 0; k < K; k++)
      for (let d = 0; d < D; d++) y[(b * K + k) * D + d] = x[(b * N + idx[b * K + k]!) * D + d]!;
  return y;
}

/** dx [B, N, D] = 0, then dx[b, idx[b, k]] += dy[b, k]. */
export function scatterAddRows(dy: Arr, idx: Arr, B: number, K: number, D: number, N: number): Float64Array {
  const dx = new Float64Array(B * N * D);
  for (let b = 0; b < B; b++)
    for (let k = 0; k < K; k++)
      for (let d = 0; d < D; d++) {
        const o = (b * N + idx[b * K + k]!) * D + d;
        dx[o] = dx[o]! + dy[(b * K + k) * D + d]!;
      }
  return dx;
}

/** [a, b] along the token axis; a batch of 1 repeats over the other's batch. */
export function catTokens(a: Arr, Ba: number, Na: number, b: Arr, Bb: number, Nb: number, D: number): Float64Array {
  const B = Math.max(Ba, Bb);
  const y = new Float64Array(B * (Na + Nb) * D);
  for (let i = 0; i < B; i++) {
    const ia = Ba === 1 ? 0 : i;
    const ib = Bb === 1 ? 0 : i;
    for (let n = 0; n < Na; n++)
      for (let d = 0; d < D; d++) y[(i * (Na + Nb) + n) * D + d] = a[(ia * Na + n) * D + d]!;
    for (let n = 0; n < Nb; n++)
      for (let d = 0; d < D; d++) y[(i * (Na + Nb) + Na + n) * D + d] = b[(ib * Nb + n) * D + d]!;
  }
  return y;
}

/** x[:, start : start + len] of x [B, N, D]. */
export function sliceTokens(x: Arr, B: number, N: number, D: number, start: number, len: number): Float64Array {
  const y = new Float64Array(B * len * D);
  for (let b = 0; b < B; b++)
    for (let n = 0; n < len; n++)
      for (let d = 0; d < D; d++) y[(b * len + n) * D + d] = x[(b * N + start + n) * D + d]!;
  return y;
}

// ---- elementwise -------------------------------------------------------------------------------------------------

/** y = a + b with b repeating over a (b.length divides a.length). */
export function add(a: Arr, b: Arr): Float64Array {
  const y = new Float64Array(a.length);
  for (let i = 0; i < a.length; i++) y[i] = a[i]! + b[i % b.length]!;
  return y;
}

/** y = a * b with b repeating over a. */
export function mul(a: Arr, b: Arr): Float64Array {
  const y = new Float64Array(a.length);
  for (let i = 0; i < a.length; i++) y[i] = a[i]! * b[i % b.length]!;
  return y;
}

/** y[j] = sum_i x[i n + j], n = the target size. */
export function sumTo(x: Arr, n: number): Float64Array {
  const y = new Float64Array(n);
  for (let i = 0; i < x.length; i++) y[i % n] = y[i % n]! + x[i]!;
  return y;
}

/** The sum of all elements. */
export function sumAll(x: Arr): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i]!;
  return s;
}

/** The mean over the token axis: x [B, N, D] -> [B, D]. */
export function meanTokens(x: Arr, B: number, N: number, D: number): Float64Array {
  const y = new Float64Array(B * D);
  for (let b = 0; b < B; b++)
    for (let n = 0; n < N; n++) for (let d = 0; d < D; d++) y[b * D + d] = y[b * D + d]! + x[(b * N + n) * D + d]! / N;
  return y;
}

// ---- patches -----------------------------------------------------------------------------------------------------

export type PatchOrder = 'hwc' | 'chw';

/** The position of pixel (c, i, j) of a patch in its patch vector. */
export function patchIndex(order: PatchOrder, C: number, p: number, c: number, i: number, j: number): number {
  return order === 'hwc' ? (i * p + j) * C + c : (c * p + i) * p + j;
}

/** images [B, C, H, W] -> patches [B, L, p*p*C], patches row-major over the (H/p) x (W/p) grid. */
export function patchify(imgs: Arr, B: number, C: number, H: number, W: number, p: number, order: PatchOrder): Float64Array {
  const gh = H / p;
  const gw = W / p;
  const P = p * p * C;
  const x = new Float64Array(B * gh * gw * P);
  for (let b = 0; b < B; b++)
    for (let c = 0; c < C; c++)
      for (let r = 0; r < H; r++)
        for (let s = 0; s < W; s++) {
          const l = Math.floor(r / p) * gw + Math.floor(s / p);
          const k = patchIndex(order, C, p, c, r % p, s % p);
          x[(b * gh * gw + l) * P + k] = imgs[((b * C + c) * H + r) * W + s]!;
        }
  return x;
}

/** The inverse of patchify. */
export function unpatchify(x: Arr, B: number, C: number, H: number, W: number, p: number, order: PatchOrder): Float64Array {
  const gw = W / p;
  const L = (H / p) * gw;
  const P = p * p * C;
  const imgs = new Float64Array(B * C * H * W);
  for (let b = 0; b < B; b++)
    for (let c = 0; c < C; c++)
      for (let r = 0; r < H; r++)
        for (let s = 0; s < W; s++) {
          const l = Math.floor(r / p) * gw + Math.floor(s / p);
          imgs[((b * C + c) * H + r) * W + s] = x[(b * L + l) * P + patchIndex(order, C, p, c, r % p, s % p)]!;
        }
  return imgs;
}

// ---- optimizer ---------------------------------------------------------------------------------------------------

export interface AdamWState {
  param: Float64Array;
  m: Float64Array;
  v: Float64Array;
}

/**
 * One step (t, 1-based) of PyTorch's AdamW, in place on the state: p -= lr wd p; m = b1 m + (1 - b1) g;
 * v = b2 v + (1 - b2) g^2; p -= lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps).
 */
export function adamwStep(
  s: AdamWState,
  grad: Arr,
  lr: number,
  beta1: number,
  beta2: number,
  eps: number,
  weightDecay: number,
  t: number,
): void {
  const bc1 = 1 - beta1 ** t;
  const bc2 = 1 - beta2 ** t;
  for (let i = 0; i < s.param.length; i++) {
    const g = grad[i]!;
    s.param[i] = s.param[i]! - lr * weightDecay * s.param[i]!;
    s.m[i] = beta1 * s.m[i]! + (1 - beta1) * g;
    s.v[i] = beta2 * s.v[i]! + (1 - beta2) * g * g;
    s.param[i] = s.param[i]! - (lr * (s.m[i]! / bc1)) / (Math.sqrt(s.v[i]! / bc2) + eps);
  }
}
