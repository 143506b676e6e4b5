// barChart: bar heights proportional to the values, one colour per series, no bar for null, checked inputs.
import { describe, expect, it } from 'vitest';
import { CHART, barChart, checkChartText, type Rgb } from '../../lib/viz/chart.js';

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

  it('refuses a character its font has no glyph for, naming the text, instead of drawing a placeholder', () => {
    const series = [{ name: 'a', color: A }];
    const panel = { title: 'p', series, groups: [{ label: 'g', values: [1.5] }], format: (v: number) => v.toFixed(1) };
    expect(() => barChart('t\u00e9st', [panel])).toThrow("barChart: the title 't\u00e9st' has the character '\u00e9' (U+00E9), which the chart font lacks; it has letters, digits, space and x.,-+_/:%()[]=?");
    expect(() => barChart('t', [{ ...panel, title: 'p#' }])).toThrow("the panel title 'p#' has the character '#'");
    expect(() => barChart('t', [{ ...panel, series: [{ name: 'a*', color: A }] }])).toThrow("the series name of 'p' 'a*' has the character '*'");
    expect(() => barChart('t', [{ ...panel, groups: [{ label: 'g\u2192h', values: [1] }] }])).toThrow("the group label of 'p' 'g\u2192h' has the character '\u2192'");
    expect(() => barChart('t', [{ ...panel, format: (v: number) => `${v}\u00d7` }])).toThrow("the value label of 1.5 in group 'g' of 'p' '1.5\u00d7' has the character '\u00d7'");
    // what number formatting writes is drawable: digits, '.', '-', exponents with 'e+' and 'e-', 'x', '%'
    for (const text of ['1.46e+3', '1.00e-7', '0123456789', '-2.5x', '75.0%', 'mae_vit_base_patch16, cuda:0, bf16']) expect(() => checkChartText(text, 'text')).not.toThrow();
    // and '+' is drawn as a plus sign, not as '?'
    const drawn = (label: string) => barChart('t', [{ ...panel, format: () => label }]).pixels;
    expect(Buffer.from(drawn('1e+3')).equals(Buffer.from(drawn('1e?3')))).toBe(false);
  });
});
