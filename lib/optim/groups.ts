/**
 * The parameter list an optimizer is built from: Tensors (one group with the given weight decay) or parameter
 * groups (each with its own weight decay and lr scale, as `model.parameterGroups()` and `paramGroupsLrd()` make; a
 * group without a weight decay takes the optimizer's default). Anything else is an Error that names the optimizer.
 */
import { expectArrayOf, expectNonNegative, expectObject } from '../check.js';
import type { ParamGroup } from '../mae/model.js';
import { Tensor, sameShape, shapeStr } from '../tensor.js';

/** A parameter group as given to an optimizer: the weight decay may be left out (the optimizer's default). */
export type ParamGroupInput = Omit<ParamGroup, 'weightDecay'> & { weightDecay?: number };

export function toParamGroups(where: string, params: unknown, opts: unknown, weightDecay: number): ParamGroup[] {
  expectObject(where, 'options', opts, false, 'e.g. { lr: 1e-3 }');
  expectNonNegative(where, 'weightDecay', weightDecay);
  const isGroup = (g: unknown) =>
    g !== null && typeof g === 'object' && Array.isArray((g as ParamGroup).params) && (g as ParamGroup).params.every((p) => p instanceof Tensor);
  if (Array.isArray(params) && params.length > 0 && params[0] instanceof Tensor) {
    expectArrayOf(where, 'params', params, (p) => p instanceof Tensor, 'a Tensor');
    expectOnce(where, (params as Tensor[]).map((p, i) => [p, `params[${i}]`]));
    return [{ params: params as Tensor[], weightDecay }];
  }
  expectArrayOf(where, 'params', params, isGroup, 'a Tensor or a parameter group { params: Tensor[], weightDecay? }');
  expectOnce(where, (params as ParamGroupInput[]).flatMap((g, i) => g.params.map((p, j): [Tensor, string] => [p, `params[${i}].params[${j}]`])));
  return (params as ParamGroupInput[]).map((g, i) => {
    if (g.weightDecay !== undefined) expectNonNegative(where, `params[${i}].weightDecay`, g.weightDecay);
    if (g.lrScale !== undefined) expectNonNegative(where, `params[${i}].lrScale`, g.lrScale);
    return { ...g, weightDecay: g.weightDecay ?? weightDecay };
  });
}

/** Each tensor once among the parameters: a step would update one given twice twice (LARS), or fail half-way (AdamW). */
function expectOnce(where: string, params: [Tensor, string][]): void {
  const seen = new Map<Tensor, string>();
  for (const [p, at] of params) {
    const first = seen.get(p);
    if (first) throw new Error(`${where}: ${at} is ${first} again; each parameter may be given once`);
    seen.set(p, at);
  }
}

/** Every gradient has its parameter's shape (checked before a step changes anything). */
export function checkGradShapes(where: string, groups: readonly ParamGroup[]): void {
  groups.forEach((g, gi) =>
    g.params.forEach((p, pi) => {
      if (p.grad && !sameShape(p.grad.shape, p.shape))
        throw new Error(`${where}: the gradient of groups[${gi}].params[${pi}] is ${shapeStr(p.grad.shape)}, the parameter is ${shapeStr(p.shape)}`);
    }),
  );
}
