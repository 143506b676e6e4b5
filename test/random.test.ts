// The seeded Generator (lib/random.ts): state() and setState() continue a stream; a state setState cannot continue
// (from a damaged checkpoint, or written by hand) is refused with an Error that names it, leaving the generator as it was.
import { describe, expect, it } from 'vitest';
import { Generator, type GeneratorState } from '../lib/random.js';

describe('Generator state', () => {
  it('setState continues the stream that state() was taken from, the cached normal included', () => {
    const a = new Generator(42);
    a.normal(); // leaves a spare normal cached
    const s = a.state();
    const b = new Generator(0);
    b.setState(JSON.parse(JSON.stringify(s)) as GeneratorState);
    expect([b.normal(), b.normal(), b.uniform(), b.int(1000)]).toEqual([a.normal(), a.normal(), a.uniform(), a.int(1000)]);
  });

  it('refuses a state it cannot continue, naming what is wrong, and keeps its own', () => {
    const cases: [unknown, string][] = [
      [null, 'Generator.setState: state must be an object, got null; e.g. what state() returned'],
      [{ s: [1, 2, 3], spareNormal: null }, 'Generator.setState: state.s must hold 4 state words, got 3'],
      [{ s: [1, 2, 3, 2 ** 32], spareNormal: null }, 'Generator.setState: state.s[3] must be an integer in [0, 2^32), got the number 4294967296'],
      [{ s: [1, -1, 3, 4], spareNormal: null }, 'Generator.setState: state.s[1] must be an integer in [0, 2^32), got the number -1'],
      [{ s: [1, 2.5, 3, 4], spareNormal: null }, 'Generator.setState: state.s[1] must be an integer in [0, 2^32), got the number 2.5'],
      [{ s: ['1', 2, 3, 4], spareNormal: null }, "Generator.setState: state.s[0] must be an integer in [0, 2^32), got the string '1'"],
      // the all-zero state: every draw would be 0, and normal() (which redraws a 0) would never return
      [{ s: [0, 0, 0, 0], spareNormal: null }, 'Generator.setState: state.s is all zeros, a state the generator never reaches (it would draw 0 forever)'],
      // a missing spare normal would be returned by the next normal() as undefined
      [{ s: [1, 2, 3, 4] }, 'Generator.setState: state.spareNormal must be null or a finite number, got undefined'],
      [{ s: [1, 2, 3, 4], spareNormal: NaN }, 'Generator.setState: state.spareNormal must be null or a finite number, got the number NaN'],
      [{ s: [1, 2, 3, 4], spareNormal: '0.5' }, "Generator.setState: state.spareNormal must be null or a finite number, got the string '0.5'"],
    ];
    for (const [state, message] of cases) {
      const g = new Generator(3);
      const before = g.state();
      expect(() => g.setState(state as GeneratorState)).toThrow(new Error(message));
      expect(g.state()).toEqual(before);
      expect(Number.isFinite(g.normal())).toBe(true);
    }
  });
});
