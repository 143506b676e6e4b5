/**
 * Learning-rate rules of the official recipes (util/lr_sched.py): the absolute lr from the base lr and the
 * effective batch, and linear warm-up then half-cycle cosine, evaluated at a fractional epoch every iteration.
 * Arguments out of range are an Error that names them.
 */
import { expectInteger, expectKnownKeys, expectNonNegative, expectObject } from '../check.js';

/** lr = blr * effectiveBatch / 256, effectiveBatch = batch per step * accumulation steps (* processes). */
export function scaledLr(blr: number, effectiveBatch: number): number {
  expectNonNegative('scaledLr', 'blr', blr);
  expectInteger('scaledLr', 'effectiveBatch', effectiveBatch, 1);
  return (blr * effectiveBatch) / 256;
}

/** The lr at fractional `epoch`: linear warm-up to `lr`, then cosine from `lr` down to `minLr` at `epochs`. */
export function cosineLr(epoch: number, opts: { lr: number; minLr?: number; warmupEpochs: number; epochs: number }): number {
  expectNonNegative('cosineLr', 'epoch', epoch);
  expectObject('cosineLr', 'opts', opts);
  expectKnownKeys('cosineLr', 'opts', opts, ['lr', 'minLr', 'warmupEpochs', 'epochs']);
  const minLr = opts.minLr === undefined ? 0 : opts.minLr; // (null is refused below, as any non-number)
  for (const [k, v] of [['lr', opts.lr], ['minLr', minLr], ['warmupEpochs', opts.warmupEpochs], ['epochs', opts.epochs]] as const) expectNonNegative('cosineLr', k, v);
  if (epoch < opts.warmupEpochs) return (opts.lr * epoch) / opts.warmupEpochs;
  const span = opts.epochs - opts.warmupEpochs;
  if (span <= 0) return opts.lr;
  const t = Math.min(1, (epoch - opts.warmupEpochs) / span);
  return minLr + (opts.lr - minLr) * 0.5 * (1 + Math.cos(Math.PI * t));
}
