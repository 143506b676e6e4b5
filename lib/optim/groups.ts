/**
 * The parameter list an optimizer is built from: Tensors (one group with the given weight decay) or parameter
 * groups (each with its own weight decay and lr scale, as `model.parameterGroups()` and `paramGroupsLrd()` make).
 * Anything else is an Error that names the optimizer.
 */
import { expectArrayOf, expectObject } from '../check.js';
import type { ParamGroup } from '../mae/model.js';
import { Tensor } from '../tensor.js';

export function toParamGroups(where: string, params: unknown, opts: unknown, weightDecay: number): ParamGroup[] {
  expectObject(where, 'options', opts, false, 'e.g. { lr: 1e-3 }');
  const isGroup = (g: unknown) =>
    g !== null && typeof g === 'object' && Array.isArray((g as ParamGroup).params) && (g as ParamGroup).params.every((p) => p instanceof Tensor);
  if (Array.isArray(params) && params.length > 0 && params[0] instanceof Tensor) {
    expectArrayOf(where, 'params', params, (p) => p instanceof Tensor, 'a Tensor');
    return [{ params: params as Tensor[], weightDecay }];
  }
  expectArrayOf(where, 'params', params, isGroup, 'a Tensor or a parameter group { params: Tensor[], weightDecay }');
  return (params as ParamGroup[]).map((g) => ({ ...g }));
}
