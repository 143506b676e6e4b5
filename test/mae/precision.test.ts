import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

describe('bf16 on a CPU without native bf16 products', () => {
  // Two bf16 forward passes and one fp32 pass of the 28-px model in a child process: its warnings on stderr, and
  // oneDNN as that process saw it
  const script = `
    const { MaskedAutoencoder } = await import(${JSON.stringify(new URL('../../dist/lib/mae/model.js', import.meta.url).href)});
    const { Tensor, tidy } = await import(${JSON.stringify(new URL('../../dist/lib/tensor.js', import.meta.url).href)});
    const { native } = await import(${JSON.stringify(new URL('../../dist/lib/native.js', import.meta.url).href)});
    const model = MaskedAutoencoder.fromPreset('mae_vit_tiny_patch4_28', {}, { seed: 0 });
    const imgs = Tensor.fromArray(Float32Array.from({ length: 2 * 28 * 28 }, (_, i) => Math.sin(i)), [2, 1, 28, 28]);
    const losses = [];
    for (const precision of ['fp32', 'bf16', 'bf16']) tidy(() => losses.push(model.forward(imgs, { precision, noise: Float32Array.from({ length: 2 * 49 }, (_, i) => (Math.sin(i * 12.9898) + 1) / 2) }).loss.item()));
    console.log(JSON.stringify({ dnnl: native.info().dnnl, losses }));`;
  const run = (env: Record<string, string>) => {
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', env: { ...process.env, ...env } });
    if (r.status !== 0) throw new Error(r.stderr);
    return { ...(JSON.parse(r.stdout) as { dnnl: { available: boolean; bf16Native?: boolean }; losses: number[] }), stderr: r.stderr };
  };
  const warnings = (stderr: string) => stderr.split('\n').filter((l) => l.includes('MAE_BF16_CPU_NOT_NATIVE'));

  it('warns once, with the reason, where oneDNN cannot be loaded; bf16 still trains (a finite loss near fp32)', () => {
    const o = run({ MAE_DNNL_LIB: '/nonexistent/libdnnl.so.2' });
    expect(o.dnnl.available).toBe(false);
    const w = warnings(o.stderr);
    expect(w).toHaveLength(1);
    expect(w[0]).toMatch(/precision 'bf16' on the CPU: oneDNN \(libdnnl\.so\.2\) could not be loaded .*\/nonexistent\/libdnnl\.so\.2.*through the BLAS on float32 copies/);
    const [fp32, bf16a, bf16b] = o.losses as [number, number, number];
    expect(bf16a).toBe(bf16b);
    expect(Math.abs(bf16a - fp32)).toBeLessThan(0.02 * fp32);
  });

  it("warns once where oneDNN would only emulate bf16 or has no kernel (DNNL_MAX_CPU_ISA), and says which", () => {
    const o = run({ DNNL_MAX_CPU_ISA: 'AVX512_CORE', ONEDNN_MAX_CPU_ISA: 'AVX512_CORE' });
    expect(o.dnnl.bf16Native).toBe(false);
    const w = warnings(o.stderr);
    expect(w).toHaveLength(1);
    expect(w[0]).toMatch(/neither AVX512-BF16 nor AMX|has no bf16 kernel on this CPU/);
  });

  it('says nothing where the products are native, or in fp32', () => {
    const o = run({});
    expect(warnings(o.stderr)).toHaveLength(o.dnnl.available && o.dnnl.bf16Native ? 0 : 1);
  });
});
