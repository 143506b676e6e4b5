/**
 * layerNorm over the last dimension: x [..., D], weight, bias [D], eps (MAE: 1e-6) -> [..., D].
 * addLayerNorm(x, r, weight, bias, eps) -> { s: x + r, y: layerNorm(s) } in one pass: a transformer block's
 * residual add and the LayerNorm after it. The graph is the unfused one (an add, then a LayerNorm on s), so
 * gradients are the same; with fused ops the LayerNorm's backward also adds the gradient that s already has from the
 * residual stream, in the same pass (autograd's backwardAdd).
 */
import { record, unsharedGrad } from '../autograd.js';
import { native, type NativeTensor } from '../native.js';
import { expectTensors, Tensor } from '../tensor.js';
import { add } from './elementwise.js';
import { fusedOps } from './fused.js';

/** y = LayerNorm(x) from the native forward's [y, mean, rstd], recorded with its backward. */
function recordLayerNorm(x: Tensor, weight: Tensor, bias: Tensor, [yh, meanh, rstdh]: NativeTensor[]): Tensor {
  const mean = new Tensor(meanh!);
  const rstd = new Tensor(rstdh!);
  const grads = (dy: Tensor, dres: Tensor | null) =>
    native.layerNormBackward(dy.handle, x.handle, weight.handle, mean.handle, rstd.handle, dres?.handle ?? null).map((h) => unsharedGrad(new Tensor(h)));
  const y = record('layerNorm', [x, weight, bias], new Tensor(yh!), (dy) => grads(dy, null), [mean, rstd], [x, weight]);
  if (y.node && fusedOps()) y.node.backwardAdd = grads;
  return y;
}

export function layerNorm(x: Tensor, weight: Tensor, bias: Tensor, eps = 1e-6): Tensor {
  expectTensors('layerNorm', { x, weight, bias });
  return recordLayerNorm(x, weight, bias, native.layerNorm(x.handle, weight.handle, bias.handle, eps));
}

export function addLayerNorm(x: Tensor, r: Tensor, weight: Tensor, bias: Tensor, eps = 1e-6): { s: Tensor; y: Tensor } {
  expectTensors('addLayerNorm', { x, r, weight, bias });
  if (!fusedOps()) {
    const s = add(x, r);
    return { s, y: layerNorm(s, weight, bias, eps) };
  }
  const [sh, ...rest] = native.addLayerNorm(x.handle, r.handle, weight.handle, bias.handle, eps);
  const s = record('add', [x, r], new Tensor(sh), (ds) => [
    x.requiresGrad ? new Tensor(ds.handle.reshape(x.shape.slice())) : null,
    r.requiresGrad ? new Tensor(ds.handle.reshape(r.shape.slice())) : null,
  ]);
  return { s, y: recordLayerNorm(s, weight, bias, rest) };
}
