// barChart: bar heights proportional to the values, one colour per series, no bar for null, checked inputs.
import { describe, expect, it } from 'vitest';
import { CHART, barChart, type Rgb } from '../../lib/viz/chart.js';

const A: Rgb = [200, 10, 10];
const B: Rgb = [10, 10, 200];

function pixelsOf(img: { pixels: Uint8Array }, c: Rgb): number {
  let n = 0;
  for (let i = 0; i < img.pixels.length; i += 3) if (img.pixels[i] === c[0] && img.pixels[i + 1] === c[1] && img.pixels[i + 2] === c[2]) n++;
  return n;
}

describe('barChart', () => {
  it('draws each series in its colour with heights proportional to the values, and nothing for null', () => {
    const img = barChart('title', [
      { title: 'speed', series: [{ name: 'a', color: A }, { name: 'b', color: B }], groups: [{ label: 'one', values: [4, null] }, { label: 'two', values: [2, 1] }], format: (v) => v.toFixed(1) },
    ]);
    expect(img.channels).toBe(3);
    expect(img.pixels.length).toBe(img.width * img.height * 3);
    // the bars (CHART.barWidth wide; 4 is the full plot height) and the legend's 16 x 16 square of each series
    const w = CHART.barWidth;
    const h = CHART.plotHeight;
    expect(pixelsOf(img, A)).toBe(w * (h + h / 2) + 16 * 16);
    expect(pixelsOf(img, B)).toBe(w * (h / 4) + 16 * 16);
  });

  it('rejects values it cannot draw and groups that do not match the series', () => {
    const series = [{ name: 'a', color: A }];
    expect(() => barChart('t', [{ title: 'p', series, groups: [{ label: 'g', values: [NaN] }], format: String }])).toThrow(/group 'g' of 'p' has the value NaN/);
    expect(() => barChart('t', [{ title: 'p', series, groups: [{ label: 'g', values: [-1] }], format: String }])).toThrow(/must be finite and >= 0/);
    expect(() => barChart('t', [{ title: 'p', series, groups: [{ label: 'g', values: [1, 2] }], format: String }])).toThrow(/has 2 values for 1 series/);
    expect(() => barChart('t', [])).toThrow(/no panels/);
  });
});
