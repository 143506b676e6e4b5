/** layerNorm over the last dimension: x [..., D], weight, bias [D], eps (MAE: 1e-6) -> [..., D]. */
import { record, unsharedGrad } from '../autograd.js';
import { native } from '../native.js';
import { Tensor } from '../tensor.js';

export function layerNorm(x: Tensor, weight: Tensor, bias: Tensor, eps = 1e-6): Tensor {
  const [yh, meanh, rstdh] = native.layerNorm(x.handle, weight.handle, bias.handle, eps);
  const mean = new Tensor(meanh);
  const rstd = new Tensor(rstdh);
  return record(
    'layerNorm',
    [x, weight, bias],
    new Tensor(yh),
    (dy) => native.layerNormBackward(dy.handle, x.handle, weight.handle, mean.handle, rstd.handle).map((h) => unsharedGrad(new Tensor(h))),
    [mean, rstd],
  );
}
