// The parameter list of an optimizer (lib/optim/groups.ts): Tensors or groups, the default weight decay, the checks.
import { afterAll, describe, expect, it } from 'vitest';
import { toParamGroups } from '../../lib/optim/groups.js';
import { Tensor } from '../../lib/tensor.js';

describe('toParamGroups', () => {
  const p = Tensor.fromArray(new Float32Array(2), [2]).keep();
  const q = Tensor.fromArray(new Float32Array(2), [2]).keep();
  afterAll(() => {
    p.dispose();
    q.dispose();
  });

  it('makes Tensors one group with the default weight decay; a group without weightDecay takes the default', () => {
    expect(toParamGroups('Opt', [p, q], {}, 0.3)).toEqual([{ params: [p, q], weightDecay: 0.3 }]);
    const groups = [{ params: [p], lrScale: 0.5 }, { params: [q], weightDecay: 0 }];
    expect(toParamGroups('Opt', groups, {}, 0.3)).toEqual([
      { params: [p], lrScale: 0.5, weightDecay: 0.3 },
      { params: [q], weightDecay: 0 },
    ]);
    // the caller's groups are copied, not changed
    expect(groups[0]).toEqual({ params: [p], lrScale: 0.5 });
  });

  it('refuses a weight decay or lr scale that is not a finite number >= 0, naming the group', () => {
    const cases: [unknown, number, string][] = [
      [[p], -1, 'Opt: weightDecay must be a finite number >= 0, got the number -1'],
      [[p], NaN, 'Opt: weightDecay must be a finite number >= 0, got the number NaN'],
      [[{ params: [p], weightDecay: 0 }, { params: [q], weightDecay: Infinity }], 0, 'Opt: params[1].weightDecay must be a finite number >= 0, got the number Infinity'],
      [[{ params: [p], weightDecay: '0.1' }], 0, "Opt: params[0].weightDecay must be a finite number >= 0, got the string '0.1'"],
      [[{ params: [p], weightDecay: null }], 0, 'Opt: params[0].weightDecay must be a finite number >= 0, got null'],
      [[{ params: [p], weightDecay: 0 }, { params: [q], weightDecay: 0, lrScale: -0.5 }], 0, 'Opt: params[1].lrScale must be a finite number >= 0, got the number -0.5'],
    ];
    for (const [params, wd, message] of cases) expect(() => toParamGroups('Opt', params, {}, wd)).toThrow(new Error(message));
  });

  it('refuses a parameter given twice, in one group or in two (a step would update it twice)', () => {
    expect(() => toParamGroups('Opt', [p, q, p], {}, 0)).toThrow(new Error('Opt: params[2] is params[0] again; each parameter may be given once'));
    expect(() => toParamGroups('Opt', [{ params: [p] }, { params: [q, p] }], {}, 0)).toThrow(
      new Error('Opt: params[1].params[1] is params[0].params[0] again; each parameter may be given once'),
    );
  });
});
