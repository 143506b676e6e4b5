// The host emulation of the CUDA kernels (test/cuda/emulate/, built as mae_cuda_emulate next to mae.node whenever
// the CUDA library is built): every vectorised and fallback kernel body runs for every lane of a grid-stride launch
// on the host and must match plain loops of its op's definition. This checks their index math, dtype handling and
// fault records without a GPU; what it cannot check (warp and block cooperation, the GPU itself) is the device
// check's job (tools/device-check.ts).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { native, packageRoot } from '../../lib/native.js';

const exe = join(packageRoot(), 'build', 'Release', 'mae_cuda_emulate');
const built = existsSync(exe);
if (!built) console.log(`[test/cuda/emulate] ${exe} is not built (no CUDA toolkit here), so the kernel emulation is skipped`);

describe.skipIf(!built)('host emulation of the CUDA kernels', () => {
  it('runs every kernel body and matches the definitions', () => {
    const r = spawnSync(exe, [], { encoding: 'utf8', timeout: 120_000 });
    const lines = r.stdout.split('\n').filter(Boolean);
    const failed = lines.filter((l) => l.startsWith('FAIL'));
    if (failed.length) console.log(r.stdout.split('\n').filter((l) => !l.startsWith('ok ')).join('\n'));
    expect(failed).toEqual([]);
    expect(r.status).toBe(0);
    // every family is there, with the cases that matter most
    for (const name of ['binary_vec_body', 'axpby_vec_body', 'gelu_vec_body', 'bias_gelu_grad_body', 'gather_rows_vec_body', 'scatter_add_rows_vec_body', 'cat_tokens_vec_body', 'slice_tokens_vec_body', 'patch32_body', 'patch_chw8_body', 'gemm_fallback_body'])
      expect(lines.some((l) => l.startsWith('ok ') && l.includes(name)), name).toBe(true);
    const summary = lines[lines.length - 1]!;
    expect(summary).toMatch(/^\d+ tests, 0 failed$/);
    expect(Number(summary.split(' ')[0])).toBeGreaterThan(500);
  });

  it('belongs to the same build as the CUDA library', () => {
    expect(native.info().cudaBuilt).toBe(true);
  });
});
