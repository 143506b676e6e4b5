// The lr rules of the official recipes (util/lr_sched.py) and their argument checks.
import { describe, expect, it } from 'vitest';
import { cosineLr, scaledLr } from '../../lib/optim/schedule.js';

describe('lr schedule', () => {
  it('scales the base lr by the effective batch over 256', () => {
    expect(scaledLr(1.5e-4, 4096)).toBeCloseTo(2.4e-3, 12);
    expect(scaledLr(1.5e-4, 64 * 4)).toBeCloseTo(1.5e-4, 12);
  });
  it('warms up linearly, then follows a half cosine to minLr', () => {
    const s = { lr: 1, minLr: 0.1, warmupEpochs: 40, epochs: 800 };
    expect(cosineLr(0, s)).toBe(0);
    expect(cosineLr(20, s)).toBeCloseTo(0.5, 12);
    expect(cosineLr(40, s)).toBeCloseTo(1, 12);
    expect(cosineLr(420, s)).toBeCloseTo(0.1 + 0.9 * 0.5, 12);
    expect(cosineLr(800, s)).toBeCloseTo(0.1, 12);
    expect(cosineLr(40 + 760 / 3, s)).toBeCloseTo(0.1 + 0.9 * 0.5 * (1 + Math.cos(Math.PI / 3)), 12);
  });

  it('refuses arguments out of range, naming them', () => {
    const s = { lr: 1, warmupEpochs: 1, epochs: 10 };
    const cases: [() => number, string][] = [
      [() => cosineLr(1, { lr: 1, epochs: 10 } as typeof s), 'cosineLr: warmupEpochs must be a finite number >= 0, got undefined'],
      [() => cosineLr(3, { ...s, epochs: NaN }), 'cosineLr: epochs must be a finite number >= 0, got the number NaN'],
      [() => cosineLr(-1, { ...s, warmupEpochs: 0 }), 'cosineLr: epoch must be a finite number >= 0, got the number -1'],
      [() => cosineLr(NaN, s), 'cosineLr: epoch must be a finite number >= 0, got the number NaN'],
      [() => cosineLr(1, { ...s, lr: Infinity }), 'cosineLr: lr must be a finite number >= 0, got the number Infinity'],
      [() => cosineLr(1, { ...s, minLr: -0.1 }), 'cosineLr: minLr must be a finite number >= 0, got the number -0.1'],
      [() => cosineLr(1, null as unknown as typeof s), 'cosineLr: opts must be an object, got null'],
      [() => scaledLr(1e-3, -256), 'scaledLr: effectiveBatch must be an integer >= 1, got the number -256'],
      [() => scaledLr(1e-3, 0), 'scaledLr: effectiveBatch must be an integer >= 1, got the number 0'],
      [() => scaledLr(NaN, 64), 'scaledLr: blr must be a finite number >= 0, got the number NaN'],
      [() => scaledLr(-1e-3, 64), 'scaledLr: blr must be a finite number >= 0, got the number -0.001'],
    ];
    for (const [call, message] of cases) expect(call).toThrow(new Error(message));
    // the edges that are in range
    expect(cosineLr(0, { lr: 1, warmupEpochs: 0, epochs: 10 })).toBe(1);
    expect(cosineLr(5, { lr: 1, warmupEpochs: 10, epochs: 10 })).toBe(0.5);
    expect(cosineLr(12, { lr: 1, warmupEpochs: 10, epochs: 10 })).toBe(1);
    expect(scaledLr(0, 1)).toBe(0);
  });
});
