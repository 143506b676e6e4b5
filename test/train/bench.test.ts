// bench(): the rows of `mae bench` on a tiny preset (both encoders per decoder depth, the baseline, FLOP ratios from
// maeFlops, MFU), a batch that does not fit in the memory allowed, bad options, the table and the chart.
import { describe, expect, it, vi } from 'vitest';
import { getPreset, maeFlops } from '../../lib/mae/index.js';
import { native } from '../../lib/native.js';
import { liveTensors } from '../../lib/tensor.js';
import { bench, benchChart, formatBench, imgPerSecLabel, paperSpeedup, type BenchEvent, type BenchResult } from '../../lib/train/bench.js';
import { barChart, checkChartText } from '../../lib/viz/chart.js';

// barChart as it is, its calls recorded: the texts benchChart has drawn
vi.mock('../../lib/viz/chart.js', async (importOriginal) => {
  const chart = await importOriginal<typeof import('../../lib/viz/chart.js')>();
  return { ...chart, barChart: vi.fn(chart.barChart) };
});

const preset = 'mae_vit_tiny_patch4_28';

describe('bench', () => {
  it('times both encoders per decoder depth against the deepest mask-token encoder, and leaves no tensor behind', async () => {
    const before = liveTensors();
    const events: BenchEvent[] = [];
    const r = await bench({ preset, decoderDepths: [2, 1], batchSize: 4, steps: 2, warmup: 1, device: 'cpu', threads: 1, onEvent: (e) => events.push(e) });
    expect(liveTensors()).toBe(before);
    expect(r.rows.map((x) => [x.decoderDepth, x.encoder])).toEqual([[2, 'mask-tokens'], [2, 'visible'], [1, 'mask-tokens'], [1, 'visible']]);
    expect(r.baseline).toEqual({ encoder: 'mask-tokens', decoderDepth: 2 });
    expect(r.timing).toBe('alternating');
    expect(r.stepTimesMs.map((t) => t.length)).toEqual([2, 2, 2, 2]);
    const c = getPreset(preset);
    const base = maeFlops({ ...c, decoderDepth: 2, maskTokenEncoder: true }).training;
    const peak = r.peakGflops.best;
    expect(peak).toBeGreaterThanOrEqual(Math.max(r.peakGflops.start, r.peakGflops.end));
    expect(peak).toBeGreaterThan(1);
    for (const [i, x] of r.rows.entries()) {
      expect(x.batch).toBe(4);
      const flops = maeFlops({ ...c, decoderDepth: x.decoderDepth, maskTokenEncoder: x.encoder === 'mask-tokens' }).training;
      const sorted = [...r.stepTimesMs[i]!].sort((a, b) => a - b);
      expect(x.stepMs).toBeCloseTo((sorted[0]! + sorted[1]!) / 2, 9);
      expect(x.imgPerSec).toBeCloseTo((4 * 1000) / x.stepMs, 9);
      const ratios = r.stepTimesMs[0]!.map((b, k) => b / r.stepTimesMs[i]![k]!).sort((a, b) => a - b);
      expect(x.speedup).toBeCloseTo((ratios[0]! + ratios[1]!) / 2, 9);
      expect(x.flopRatio).toBeCloseTo(base / flops, 12);
      expect(x.mfu).toBeCloseTo((flops * x.imgPerSec) / (peak * 1e9), 12);
      expect(x.paper).toBeNull();
    }
    expect(r.rows[0]!.speedup).toBe(1);
    expect(r.rows[1]!.flopRatio).toBeGreaterThan(2);
    expect(events.some((e) => e.type === 'progress' && /timed step 2\/2/.test(e.message))).toBe(true);

    const table = formatBench(r);
    expect(table.split('\n')[0]).toMatch(/^model\s+decoder depth\s+encoder\s+batch\s+step ms\s+img\/s\s+speed-up\s+FLOP ratio\s+MFU\s+paper$/);
    expect(table).toMatch(/mae_vit_tiny_patch4_28\s+1\s+visible \(MAE\)\s+4\s/);
    const png = benchChart(r);
    expect(png.channels).toBe(3);
    expect(png.pixels.length).toBe(png.width * png.height * 3);
  });

  it('times bf16 on the CPU, with the peak taken in bf16 products, and leaves no tensor behind', async () => {
    const before = liveTensors();
    const r = await bench({ preset, decoderDepths: [1], batchSize: 4, steps: 1, warmup: 1, device: 'cpu', threads: 1, precision: 'bf16' });
    expect(liveTensors()).toBe(before);
    expect(r.precision).toBe('bf16');
    expect(r.rows.map((x) => x.encoder)).toEqual(['mask-tokens', 'visible']);
    expect(r.rows.every((x) => Number.isFinite(x.stepMs) && x.stepMs > 0 && x.mfu > 0)).toBe(true);
    expect(r.peakGflops.best).toBeGreaterThan(1);
    // the table names what ran the bf16 products
    const d = native.info().dnnl;
    expect(r.machine.onednn).toMatch(d.available ? new RegExp(`^${d.version!.replace(/\./g, '\\.')} isa ${d.isa}( \\(|$)`) : /^unavailable \(/);
    // with a note where the products are not native, or run without the AMX the CPU has (unless the environment says so)
    const limited = process.env.ONEDNN_MAX_CPU_ISA || process.env.DNNL_MAX_CPU_ISA;
    expect(r.machine.onednn !== `${d.version} isa ${d.isa}`).toBe(!d.bf16Products || (d.amxSupport?.cpu === true && !d.amx && !limited));
    expect(formatBench(r)).toContain(`, oneDNN ${r.machine.onednn}; `);
  });

  it('the chart writes img/s as plain numbers (whole from 100, 3 significant digits below), in characters its font has', () => {
    const row = (encoder: 'mask-tokens' | 'visible', decoderDepth: number, imgPerSec: number, speedup: number) =>
      ({ model: preset, decoderDepth, encoder, batch: 64, stepMs: 64000 / imgPerSec, imgPerSec, speedup, flopRatio: speedup, mfu: 0.5, paper: null });
    const r = {
      machine: { threads: 2 }, device: 'cuda:0', precision: 'bf16', baseline: { encoder: 'mask-tokens', decoderDepth: 8 },
      rows: [row('mask-tokens', 8, 0.5, 1), row('visible', 8, 12.345, 24.7), row('mask-tokens', 1, 346.5, 693), row('visible', 1, 1462.3, 2924.6), row('visible', 2, 12345.6, 24691.2)],
    } as unknown as BenchResult;
    vi.mocked(barChart).mockClear();
    benchChart(r);
    const [title, panels] = vi.mocked(barChart).mock.lastCall!;
    const values = panels.map((p) => p.groups.flatMap((g) => g.values.filter((v) => v !== null).map((v) => p.format(v))));
    expect(values).toEqual([['0.500', '12.3', '347', '1462', '12346'], ['1.0x', '24.7x', '693.0x', '2924.6x', '24691.2x']]);
    const texts = [title, ...panels.flatMap((p) => [p.title, ...p.series.map((s) => s.name), ...p.groups.map((g) => g.label)]), ...values.flat()];
    for (const t of texts) expect(() => checkChartText(t, 'text')).not.toThrow();
    expect(imgPerSecLabel(99.94)).toBe('99.9');
    expect(imgPerSecLabel(99.96)).toBe('100');
    expect(imgPerSecLabel(1e21)).toBe('1000000000000000000000');
    expect(imgPerSecLabel(1e-7)).toBe('0.000000100');
  });

  it('gives the paper\'s Table 2 figures for ViT-L and ViT-H rows when the baseline has the 8-block decoder', () => {
    const rows = (p: string, baseline: number) =>
      ([[8, 'mask-tokens'], [8, 'visible'], [1, 'mask-tokens'], [1, 'visible']] as const).map(([d, e]) => paperSpeedup(p, baseline, e, d));
    expect(rows('mae_vit_large_patch16', 8)).toEqual([1, 2.8, null, 3.7]);
    expect(rows('mae_vit_huge_patch14', 8)).toEqual([1, 3.5, null, 4.1]);
    expect(rows('mae_vit_large_patch16', 12)).toEqual([null, null, null, null]);
    expect(rows('mae_vit_base_patch16', 8)).toEqual([null, null, null, null]);
    expect(paperSpeedup('mae_vit_large_patch16', 8, 'visible', 4)).toBeNull();
  });

  it('says when a batch does not fit in the memory allowed, and takes a smaller one', async () => {
    const notes: string[] = [];
    const r = await bench({
      preset, decoderDepths: [1], batchSize: 64, steps: 1, warmup: 0, device: 'cpu', threads: 1, maxMemoryBytes: 96 * 2 ** 20,
      onEvent: (e) => e.type === 'note' && notes.push(e.message),
    });
    expect(notes.join('\n')).toMatch(/batch 64 would need about [\d.]+ GiB .*GiB are free/);
    expect(notes.join('\n')).toMatch(/trying batch 32/);
    const batch = r.rows[0]!.batch;
    expect(batch).toBeLessThan(64);
    expect(batch).toBeGreaterThanOrEqual(1);
    expect(r.rows.every((x) => x.batch === batch && Number.isFinite(x.stepMs))).toBe(true);
  });

  it('times the configurations one after another when their models do not fit in memory together', async () => {
    const before = liveTensors();
    const notes: string[] = [];
    const r = await bench({
      preset, decoderDepths: [2, 1], batchSize: 2, steps: 1, warmup: 0, device: 'cpu', threads: 1, maxMemoryBytes: 160 * 2 ** 20,
      onEvent: (e) => e.type === 'note' && notes.push(e.message),
    });
    expect(liveTensors()).toBe(before);
    expect(notes.join('\n')).toMatch(/the 4 models do not fit in memory together .*one after another/);
    expect(r.timing).toBe('one after another');
    expect(r.rows.map((x) => x.encoder)).toEqual(['mask-tokens', 'visible', 'mask-tokens', 'visible']);
    expect(r.rows.every((x) => x.batch === 2 && x.stepMs > 0)).toBe(true);
    expect(r.rows[1]!.speedup).toBeCloseTo(r.rows[0]!.stepMs / r.rows[1]!.stepMs, 9);
  });

  it('rejects a preset, depth, device or count that makes no sense, naming it', async () => {
    await expect(bench({ preset: 'vit_giant' })).rejects.toThrow(/unknown preset 'vit_giant'; available: mae_vit_base_patch16/);
    await expect(bench({ preset, decoderDepths: [0] })).rejects.toThrow(/^bench: decoderDepths\[0\] must be a positive integer \(a decoder depth, in blocks\), got the number 0$/);
    await expect(bench({ preset, decoderDepths: [2.5] })).rejects.toThrow(/decoderDepths\[0\] must be .* got the number 2\.5$/);
    await expect(bench({ preset, decoderDepths: [] })).rejects.toThrow(/^bench: decoderDepths must hold at least one decoder depth$/);
    await expect(bench({ preset, decoderDepths: [8, 1, 8] })).rejects.toThrow(/^bench: decoderDepths gives decoder depth 8 twice$/);
    await expect(bench({ preset, device: 'gpu' })).rejects.toThrow(/bench: device must be 'cpu', 'cuda' or 'cuda:N', got 'gpu'/);
    await expect(bench({ preset, device: 'cpu', precision: 'fp16' as never })).rejects.toThrow(/bench: precision must be 'fp32' or 'bf16', got 'fp16'/);
    await expect(bench({ preset, device: 'cpu', steps: 0 })).rejects.toThrow(/steps must be a positive integer/);
    await expect(bench({ preset, device: 'cpu', batchSize: -4 })).rejects.toThrow(/batchSize must be a positive integer, got -4/);
    await expect(bench({ preset, device: 'cpu', batchSize: 1e300 })).rejects.toThrow(/batchSize must be a positive integer, got 1e\+300/);
    await expect(bench({ preset, device: 'cpu', steps: 2 ** 60 })).rejects.toThrow(/steps must be a positive integer, got 1152921504606847000/);
    await expect(bench({ preset, device: 'cpu', threads: 0 })).rejects.toThrow(/^bench: threads must be an integer in \[1, 1024\], got the number 0$/);
    // a misspelt option is refused, not ignored
    await expect(bench({ preset, device: 'cpu', step: 1 } as never)).rejects.toThrow(/^bench: options has no option 'step' \(did you mean steps\?\)/);
  });
});
