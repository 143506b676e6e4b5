/**
 * Bar charts as 8-bit RGB images (for lib/viz/png.ts), with text in a built-in 5x7 pixel font: one or more panels
 * stacked under a title; each panel has groups of bars (one bar per series, its height proportional to the value,
 * the value written above it, the group's label below) and a legend of its series. Text may use only the font's
 * characters (chartCharacters: letters of either case, drawn as capitals, digits and a few signs); any other is an
 * Error, never a silent placeholder.
 */
import { expectArrayOf, expectString } from '../check.js';
import type { Image8 } from './png.js';

export type Rgb = readonly [number, number, number];

export interface BarPanel {
  title: string;
  series: { name: string; color: Rgb }[];
  /** one value per series; null draws no bar */
  groups: { label: string; values: (number | null)[] }[];
  /** the text written above a bar */
  format: (v: number) => string;
}

/** pixels per font pixel, bar width (room for a four-character value label), gap between bars, plot height */
export const CHART = { scale: 2, barWidth: 52, barGap: 8, plotHeight: 180 };

const S = CHART.scale;
const CHAR_W = 6 * S;
const LINE_H = 8 * S;
const MARGIN = 16;
const GAP = 24;
const BG: Rgb = [255, 255, 255];
const INK: Rgb = [40, 40, 40];
const AXIS: Rgb = [160, 160, 160];

/**
 * Throws unless the font has a glyph for every character of `text` (`what` says where the text goes). Lower-case
 * letters are drawn as capitals ('x' has its own glyph).
 */
export function checkChartText(text: string, what: string): void {
  for (const ch of text)
    if (!(ch in FONT || ch.toUpperCase() in FONT))
      throw new Error(`barChart: ${what} '${text}' has the character '${ch}' (U+${ch.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}), which the chart font lacks; it has ${chartCharacters()}`);
}

/** The characters the chart font draws (lower-case letters as capitals), for messages. */
export function chartCharacters(): string {
  return `letters, digits, space and ${Object.keys(FONT).filter((c) => !/[A-Z0-9 ]/.test(c)).join('')}`;
}

/** Draws `panels` under `title`. Every value must be finite and >= 0, and every text drawable (checkChartText). */
export function barChart(title: string, panels: readonly BarPanel[]): Image8 {
  expectString('barChart', 'title', title);
  expectArrayOf('barChart', 'panels', panels, (p) => p !== null && typeof p === 'object' && !Array.isArray(p), 'a panel { title, series, groups, format }');
  if (panels.length === 0) throw new Error('barChart: no panels');
  checkChartText(title, 'the title');
  for (const p of panels) {
    if (p.groups.length === 0) throw new Error(`barChart: panel '${p.title}' has no groups`);
    checkChartText(p.title, 'the panel title');
    for (const s of p.series) checkChartText(s.name, `the series name of '${p.title}'`);
    for (const g of p.groups) {
      if (g.values.length !== p.series.length) throw new Error(`barChart: group '${g.label}' of '${p.title}' has ${g.values.length} values for ${p.series.length} series`);
      checkChartText(g.label, `the group label of '${p.title}'`);
      for (const v of g.values) {
        if (v !== null && !(Number.isFinite(v) && v >= 0)) throw new Error(`barChart: group '${g.label}' of '${p.title}' has the value ${v}; values must be finite and >= 0`);
        if (v !== null) checkChartText(p.format(v), `the value label of ${v} in group '${g.label}' of '${p.title}'`);
      }
    }
  }
  const groupWidth = (p: BarPanel, g: BarPanel['groups'][number]) => Math.max(textWidth(g.label), p.series.length * CHART.barWidth + (p.series.length - 1) * CHART.barGap);
  const panelWidth = (p: BarPanel) => p.groups.reduce((w, g) => w + groupWidth(p, g), 0) + (p.groups.length - 1) * GAP;
  const legendWidth = (p: BarPanel) => p.series.reduce((w, s) => w + LINE_H + 6 + textWidth(s.name) + GAP, 0);
  const width = 2 * MARGIN + Math.max(textWidth(title), ...panels.map((p) => Math.max(panelWidth(p), textWidth(p.title) + GAP + legendWidth(p))));
  const panelHeight = LINE_H + 12 + LINE_H + 4 + CHART.plotHeight + 8 + LINE_H + 16;
  const height = MARGIN + LINE_H + 16 + panels.length * panelHeight;
  const c = new Canvas(width, height);
  c.text(MARGIN, MARGIN, title, INK);

  let y = MARGIN + LINE_H + 16;
  for (const p of panels) {
    c.text(MARGIN, y, p.title, INK);
    let lx = MARGIN + textWidth(p.title) + GAP;
    for (const s of p.series) {
      c.rect(lx, y, LINE_H, LINE_H, s.color);
      c.text(lx + LINE_H + 6, y, s.name, INK);
      lx += LINE_H + 6 + textWidth(s.name) + GAP;
    }
    const top = y + LINE_H + 12 + LINE_H + 4;
    const bottom = top + CHART.plotHeight;
    const max = Math.max(...p.groups.flatMap((g) => g.values.filter((v): v is number => v !== null)), 0);
    c.rect(MARGIN, bottom, panelWidth(p), 2, AXIS);
    let x = MARGIN;
    for (const g of p.groups) {
      const w = groupWidth(p, g);
      let bx = x + Math.floor((w - (p.series.length * CHART.barWidth + (p.series.length - 1) * CHART.barGap)) / 2);
      g.values.forEach((v, k) => {
        if (v !== null) {
          const h = max > 0 ? Math.round((v / max) * CHART.plotHeight) : 0;
          c.rect(bx, bottom - h, CHART.barWidth, h, p.series[k]!.color);
          const label = p.format(v);
          c.text(bx + Math.floor((CHART.barWidth - textWidth(label)) / 2), bottom - h - LINE_H - 2, label, INK);
        }
        bx += CHART.barWidth + CHART.barGap;
      });
      c.text(x + Math.floor((w - textWidth(g.label)) / 2), bottom + 8, g.label, INK);
      x += w + GAP;
    }
    y += panelHeight;
  }
  return { width, height, channels: 3, pixels: c.pixels };
}

function textWidth(s: string): number {
  return s.length * CHAR_W;
}

class Canvas {
  readonly pixels: Uint8Array;
  constructor(
    readonly width: number,
    readonly height: number,
  ) {
    this.pixels = new Uint8Array(width * height * 3);
    for (let i = 0; i < width * height; i++) this.pixels.set(BG, 3 * i);
  }

  rect(x: number, y: number, w: number, h: number, color: Rgb): void {
    for (let yy = Math.max(0, y); yy < Math.min(this.height, y + h); yy++)
      for (let xx = Math.max(0, x); xx < Math.min(this.width, x + w); xx++) this.pixels.set(color, 3 * (yy * this.width + xx));
  }

  /** `s` with its top-left corner at (x, y); every character has a glyph (checked by barChart: checkChartText). */
  text(x: number, y: number, s: string, color: Rgb): void {
    for (const ch of s) {
      const rows = FONT[ch] ?? FONT[ch.toUpperCase()];
      if (!rows) throw new Error(`barChart: no glyph for '${ch}'`);
      rows.forEach((bits, r) => {
        for (let col = 0; col < 5; col++) if (bits & (1 << (4 - col))) this.rect(x + col * S, y + r * S, S, S, color);
      });
      x += CHAR_W;
    }
  }
}

/** 5x7 glyphs: seven rows of five pixels, the left pixel the high bit. */
const FONT: Record<string, number[]> = Object.fromEntries(
  Object.entries({
    ' ': '00000 00000 00000 00000 00000 00000 00000',
    '0': '01110 10001 10011 10101 11001 10001 01110',
    '1': '00100 01100 00100 00100 00100 00100 01110',
    '2': '01110 10001 00001 00010 00100 01000 11111',
    '3': '11111 00010 00100 00010 00001 10001 01110',
    '4': '00010 00110 01010 10010 11111 00010 00010',
    '5': '11111 10000 11110 00001 00001 10001 01110',
    '6': '00110 01000 10000 11110 10001 10001 01110',
    '7': '11111 00001 00010 00100 01000 01000 01000',
    '8': '01110 10001 10001 01110 10001 10001 01110',
    '9': '01110 10001 10001 01111 00001 00010 01100',
    A: '01110 10001 10001 10001 11111 10001 10001',
    B: '11110 10001 10001 11110 10001 10001 11110',
    C: '01110 10001 10000 10000 10000 10001 01110',
    D: '11100 10010 10001 10001 10001 10010 11100',
    E: '11111 10000 10000 11110 10000 10000 11111',
    F: '11111 10000 10000 11110 10000 10000 10000',
    G: '01110 10001 10000 10111 10001 10001 01111',
    H: '10001 10001 10001 11111 10001 10001 10001',
    I: '01110 00100 00100 00100 00100 00100 01110',
    J: '00111 00010 00010 00010 00010 10010 01100',
    K: '10001 10010 10100 11000 10100 10010 10001',
    L: '10000 10000 10000 10000 10000 10000 11111',
    M: '10001 11011 10101 10101 10001 10001 10001',
    N: '10001 10001 11001 10101 10011 10001 10001',
    O: '01110 10001 10001 10001 10001 10001 01110',
    P: '11110 10001 10001 11110 10000 10000 10000',
    Q: '01110 10001 10001 10001 10101 10010 01101',
    R: '11110 10001 10001 11110 10100 10010 10001',
    S: '01111 10000 10000 01110 00001 00001 11110',
    T: '11111 00100 00100 00100 00100 00100 00100',
    U: '10001 10001 10001 10001 10001 10001 01110',
    V: '10001 10001 10001 10001 10001 01010 00100',
    W: '10001 10001 10001 10101 10101 10101 01010',
    X: '10001 10001 01010 00100 01010 10001 10001',
    Y: '10001 10001 10001 01010 00100 00100 00100',
    Z: '11111 00001 00010 00100 01000 10000 11111',
    x: '00000 00000 10001 01010 00100 01010 10001',
    '.': '00000 00000 00000 00000 00000 01100 01100',
    ',': '00000 00000 00000 00000 01100 00100 01000',
    '-': '00000 00000 00000 11111 00000 00000 00000',
    '+': '00000 00100 00100 11111 00100 00100 00000',
    _: '00000 00000 00000 00000 00000 00000 11111',
    '/': '00000 00001 00010 00100 01000 10000 00000',
    ':': '00000 01100 01100 00000 01100 01100 00000',
    '%': '11000 11001 00010 00100 01000 10011 00011',
    '(': '00010 00100 01000 01000 01000 00100 00010',
    ')': '01000 00100 00010 00010 00010 00100 01000',
    '[': '01110 01000 01000 01000 01000 01000 01110',
    ']': '01110 00010 00010 00010 00010 00010 01110',
    '=': '00000 00000 11111 00000 11111 00000 00000',
    '?': '01110 10001 00001 00010 00100 00000 00100',
  }).map(([ch, rows]) => [ch, rows.split(' ').map((r) => parseInt(r, 2))]),
);
