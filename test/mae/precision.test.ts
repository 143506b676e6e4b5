import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { amxUnusedReason, cpuBf16Tip, cpuBf16Warning } from '../../lib/mae/precision.js';
import { native, type NativeDnnlInfo } from '../../lib/native.js';
import { cpuFlags } from '../helpers/cpu.js';

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
    return { ...(JSON.parse(r.stdout) as { dnnl: NativeDnnlInfo; losses: number[] }), stderr: r.stderr };
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
    // the limit is the reason named (without it this CPU might well have AVX512-BF16 or AMX)
    expect(w[0]).toMatch(/ONEDNN_MAX_CPU_ISA=AVX512_CORE limits oneDNN 2\.\d+\.\d+ to avx(512_core|2), where it (would emulate bf16|has no bf16 kernel)/);
    // on a CPU with AMX, the limit is the reason it goes unused, and no second warning says so
    expect(amxUnusedReason(o.dnnl, { DNNL_MAX_CPU_ISA: 'AVX512_CORE', ONEDNN_MAX_CPU_ISA: 'AVX512_CORE' })).toBe(
      o.dnnl.amxSupport?.cpu ? 'ONEDNN_MAX_CPU_ISA=AVX512_CORE limits oneDNN to avx512_core' : undefined,
    );
    expect(o.stderr).not.toContain('MAE_BF16_CPU_AMX_UNUSED');
  });

  it('says nothing where the products are native, or in fp32', () => {
    const o = run({});
    expect(warnings(o.stderr)).toHaveLength(o.dnnl.available && o.dnnl.bf16Native ? 0 : 1);
  });
});

describe('AMX: whether oneDNN uses it, and why not on a CPU that has it', () => {
  const flags = cpuFlags();

  it("info().dnnl.amxSupport agrees with oneDNN's choice and the kernel's CPU flags", () => {
    const d = native.info().dnnl;
    if (!d.available) return expect(d.amxSupport).toBeUndefined();
    const s = d.amxSupport!;
    // oneDNN on AMX needs all three; the kernel lists amx_tile and amx_bf16 only where the CPU has them
    if (d.amx) expect(s).toEqual({ cpu: true, kernel: true, permitted: true });
    if (flags.has('amx_tile') && flags.has('amx_bf16')) expect(s.cpu).toBe(true);
    if (s.kernel) expect(s.cpu).toBe(true); // XCR0 enables only the state the CPU has
    // oneDNN 2.7.4 fixed the AMX tile configuration that odd reduction lengths met
    const [major, minor, patch] = d.version!.split('.').map(Number) as [number, number, number];
    expect(d.amxOddKDeclined).toBe(d.amx === true && major * 1e6 + minor * 1e3 + patch < 2007004);
    expect(amxUnusedReason(d, {}) === undefined).toBe(!s.cpu || d.amx === true);
  });

  // what each state says, on made-up infos: an AMX CPU that oneDNN runs on AVX512-BF16
  const avx512bf16 = (amxSupport: NativeDnnlInfo['amxSupport']): NativeDnnlInfo => ({
    available: true, library: 'libdnnl.so.2', version: '2.6.3', isa: 'avx512_core_bf16', bf16Native: true, amx: false,
    bf16Matmul: true, bf16Products: true, amxSupport,
  });
  const cases: [string, NativeDnnlInfo, NodeJS.ProcessEnv, RegExp | undefined, string | undefined][] = [
    ['no AMX on the CPU', avx512bf16({ cpu: false, kernel: false, permitted: false }), {}, undefined, undefined],
    ['oneDNN on AMX', { ...avx512bf16({ cpu: true, kernel: true, permitted: true }), isa: 'avx512_core_amx', amx: true }, {}, undefined, undefined],
    ['a kernel before 5.16', avx512bf16({ cpu: true, kernel: false, permitted: false }), {}, /does not enable the AMX state \(XCR0; Linux 5\.16/, 'MAE_BF16_CPU_AMX_UNUSED'],
    ['permission refused', avx512bf16({ cpu: true, kernel: true, permitted: false }), {}, /refused this process the AMX tile data \(arch_prctl ARCH_REQ_XCOMP_PERM/, 'MAE_BF16_CPU_AMX_UNUSED'],
    ["oneDNN's own choice", avx512bf16({ cpu: true, kernel: true, permitted: true }), {}, /oneDNN 2\.6\.3 chose avx512_core_bf16/, 'MAE_BF16_CPU_AMX_UNUSED'],
    ['DNNL_MAX_CPU_ISA', avx512bf16({ cpu: true, kernel: true, permitted: true }), { DNNL_MAX_CPU_ISA: 'AVX512_CORE_BF16' }, /^DNNL_MAX_CPU_ISA=AVX512_CORE_BF16 limits oneDNN to avx512_core_bf16$/, undefined],
    ['ONEDNN_MAX_CPU_ISA over DNNL_', avx512bf16({ cpu: true, kernel: false, permitted: false }), { DNNL_MAX_CPU_ISA: 'ALL', ONEDNN_MAX_CPU_ISA: 'AVX512_CORE_BF16' }, /^ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16 /, undefined],
    ['oneDNN not loaded', { available: false, reason: 'no libdnnl', library: 'libdnnl.so.2', bf16Products: false }, {}, undefined, 'MAE_BF16_CPU_NOT_NATIVE'],
  ];
  const avx512 = { ...avx512bf16({ cpu: false, kernel: false, permitted: false }), isa: 'avx512_core', bf16Native: false, bf16Products: false };
  const avx2 = { ...avx512, isa: 'avx2', bf16Matmul: false };
  const notNative: [string, NativeDnnlInfo, NodeJS.ProcessEnv, string][] = [
    ['oneDNN not loaded', { available: false, reason: 'no libdnnl', library: 'libdnnl.so.2', bf16Products: false }, {}, 'no libdnnl'],
    ['AVX-512 without AVX512-BF16', avx512, {}, "this CPU has neither AVX512-BF16 nor AMX (oneDNN 2.6.3, isa avx512_core), and oneDNN's bf16 emulation is slower than the BLAS in float32"],
    ['AVX2', avx2, {}, 'oneDNN 2.6.3 has no bf16 kernel on this CPU (isa avx2; oneDNN 2.x needs AVX-512)'],
    ['AVX-512 by DNNL_MAX_CPU_ISA', avx512, { DNNL_MAX_CPU_ISA: 'AVX512_CORE' }, 'DNNL_MAX_CPU_ISA=AVX512_CORE limits oneDNN 2.6.3 to avx512_core, where it would emulate bf16, slower than the BLAS in float32'],
    ['AVX2 by ONEDNN_MAX_CPU_ISA', avx2, { ONEDNN_MAX_CPU_ISA: 'AVX2' }, 'ONEDNN_MAX_CPU_ISA=AVX2 limits oneDNN 2.6.3 to avx2, where it has no bf16 kernel'],
  ];
  for (const [name, d, env, why] of notNative)
    it(`MAE_BF16_CPU_NOT_NATIVE, ${name}: says why`, () =>
      expect(cpuBf16Warning(d, env)).toEqual({
        code: 'MAE_BF16_CPU_NOT_NATIVE',
        message: `precision 'bf16' on the CPU: ${why}; its matrix products run through the BLAS on float32 copies, about the speed of precision 'fp32' (see \`mae info\`)`,
      }));
  it('the tip for fp32 runs: only where bf16 products run natively, naming the ISA', () => {
    for (const [, d] of cases) {
      const tip = cpuBf16Tip(d);
      if (d.bf16Products) expect(tip).toBe(`tip: this CPU runs bf16 matrix products natively (oneDNN 2.6.3, ${d.isa}): --precision bf16 trains faster, with bfloat16 activations and float32 master weights, optimizer state and loss`);
      else expect(tip).toBeUndefined();
    }
    for (const [, d] of notNative) expect(cpuBf16Tip(d)).toBeUndefined();
    expect(cpuBf16Tip() !== undefined).toBe(native.info().dnnl.bf16Products);
  });
  for (const [name, d, env, reason, code] of cases)
    it(`${name}: ${reason ? 'says why' : 'no reason'}, ${code ?? 'no warning'}`, () => {
      const why = amxUnusedReason(d, env);
      if (reason) expect(why).toMatch(reason);
      else expect(why).toBeUndefined();
      const w = cpuBf16Warning(d, env);
      expect(w?.code).toBe(code);
      if (code === 'MAE_BF16_CPU_AMX_UNUSED') expect(w!.message).toBe(`precision 'bf16' on the CPU: this CPU has AMX, but oneDNN runs its bf16 products on avx512_core_bf16 instead: ${why} (see \`mae info\`)`);
    });
});
