/**
 * The precision of a forward pass: fp32, or bf16 (bfloat16 activations, fp32 arithmetic inside the kernels, fp32
 * master weights and statistics). bf16 runs on every device: on the CPU its matrix products go through oneDNN (AMX
 * or AVX512-BF16 where the CPU has them, `mae info` says which), else through the BLAS on widened copies.
 */
import { native } from '../native.js';
import type { Tensor } from '../tensor.js';

/**
 * Activation precision: 'fp32', or 'bf16' (CUDA, or the CPU with oneDNN): the images are cast to bfloat16 at the
 * patch embedding and every activation after it is bfloat16 (fp32 arithmetic inside the kernels); the weights stay
 * fp32 master copies, LayerNorm statistics, the attention lse and the loss stay fp32.
 */
export type Precision = 'fp32' | 'bf16';

/** The precision option of `where`: 'fp32' (the default) or 'bf16'; anything else is an Error that names it. */
export function checkPrecision(precision: unknown, where: string): Precision {
  const p = precision ?? 'fp32';
  if (p !== 'fp32' && p !== 'bf16') throw new Error(`${where}: precision must be 'fp32' or 'bf16', got '${String(p)}'`);
  return p;
}

/** imgs in bfloat16 on their device (for precision 'bf16'). */
export function toBf16(imgs: Tensor): Tensor {
  if (imgs.device === 'cpu') warnIfCpuBf16NotNative();
  return imgs.dtype === 'bfloat16' ? imgs : imgs.to(imgs.device, 'bfloat16');
}

let cpuBf16Checked = false;

/**
 * Once per thread, at the first bf16 computation on the CPU: where the CPU's bf16 products cannot run natively
 * through oneDNN (not loaded, no kernel, or AVX-512 without AVX512-BF16 or AMX), they run through the BLAS on float32
 * copies, about the speed of precision 'fp32', and a warning (code MAE_BF16_CPU_NOT_NATIVE) says so and why.
 */
function warnIfCpuBf16NotNative(): void {
  if (cpuBf16Checked) return;
  cpuBf16Checked = true;
  const d = native.info().dnnl;
  if (d.bf16Products) return;
  const why = !d.available
    ? (d.reason ?? 'oneDNN could not be loaded')
    : !d.bf16Matmul
      ? `oneDNN ${d.version} has no bf16 kernel on this CPU (isa ${d.isa}; oneDNN 2.x needs AVX-512)`
      : `this CPU has neither AVX512-BF16 nor AMX (oneDNN ${d.version}, isa ${d.isa}), and oneDNN's bf16 emulation is slower than the BLAS in float32`;
  process.emitWarning(
    `precision 'bf16' on the CPU: ${why}; its matrix products run through the BLAS on float32 copies, about the speed of precision 'fp32' (see \`mae info\`)`,
    { code: 'MAE_BF16_CPU_NOT_NATIVE' },
  );
}

/** x in float32 (features handed to the caller are float32 whatever the precision they were computed in). */
export function toFloat32(x: Tensor): Tensor {
  return x.dtype === 'float32' ? x : x.to(x.device, 'float32');
}
