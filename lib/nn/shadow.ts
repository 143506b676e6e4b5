/**
 * bf16 weight shadows: for bf16 products (CUDA, and the CPU through oneDNN), a bfloat16 copy of each fp32 weight, so
 * that a product reads the copy instead of converting the weight every time (a forward and two backward products per
 * layer and step).
 * AdamW rewrites a shadow in the same kernel that updates its weight (the new values rounded to bfloat16); a weight
 * changed any other way (Tensor.write, loading, moving: its version changes) gets a new shadow at its next use.
 * Only with fused ops (MAE_FUSED, lib/ops/fused.ts); shadows are freed with their weight's module.
 */
import { native } from '../native.js';
import { fusedOps } from '../ops/fused.js';
import { Tensor } from '../tensor.js';

interface Shadow {
  t: Tensor;
  /** the weight's version the shadow holds */
  version: number;
}

const shadows = new WeakMap<Tensor, Shadow>();

/**
 * The bf16 shadow of weight `w` for a product with input x, or null when the product needs none (x is not
 * bfloat16, w is not a float32 weight, or fused ops are off). On the CPU a bf16 product always reads a bf16 weight:
 * without a shadow (fused ops off) it rounds w itself each time.
 */
export function shadowFor(w: Tensor, x: Tensor): Tensor | null {
  if (x.dtype !== 'bfloat16' || w.dtype !== 'float32' || !fusedOps()) return null;
  let s = shadows.get(w);
  if (s && (s.version !== w.version || s.t.disposed || s.t.device !== w.device)) {
    s.t.dispose();
    s = undefined;
  }
  if (!s) {
    s = { t: new Tensor(native.to(w.handle, w.device, 'bfloat16')).keep(), version: w.version };
    shadows.set(w, s);
  }
  return s.t;
}

/** The shadow of p that an optimizer step must rewrite (null: none, or it lives on another device). */
export function shadowToUpdate(p: Tensor): Tensor | null {
  const s = shadows.get(p);
  return s && !s.t.disposed && s.t.device === p.device ? s.t : null;
}

/** After an optimizer step wrote p and its shadow: the shadow holds p's current values. */
export function shadowUpdated(p: Tensor): void {
  const s = shadows.get(p);
  if (s) s.version = p.version;
}

/** Frees the shadow of p, if it has one. */
export function disposeShadow(p: Tensor): void {
  const s = shadows.get(p);
  if (s) {
    s.t.dispose();
    shadows.delete(p);
  }
}
