/**
 * The precision of a forward pass: fp32, or bf16 (bfloat16 activations, fp32 arithmetic inside the kernels, fp32
 * master weights and statistics). bf16 runs on every device: on the CPU its matrix products go through oneDNN (AMX
 * or AVX512-BF16 where the CPU has them, `mae info` says which), else through the BLAS on widened copies.
 */
import { expectString } from '../check.js';
import { native, type NativeDnnlInfo } from '../native.js';
import type { Tensor } from '../tensor.js';

/**
 * Activation precision: 'fp32', or 'bf16' (CUDA, or the CPU with oneDNN): the images are cast to bfloat16 at the
 * patch embedding and every activation after it is bfloat16 (fp32 arithmetic inside the kernels); the weights stay
 * fp32 master copies, LayerNorm statistics, the attention lse and the loss stay fp32.
 */
export type Precision = 'fp32' | 'bf16';

/** The precision option of `where`: 'fp32' (the default) or 'bf16'; anything else is an Error that names it. */
export function checkPrecision(precision: unknown, where: string): Precision {
  expectString('checkPrecision', 'where', where, "a function's name");
  const p = precision ?? 'fp32';
  if (p !== 'fp32' && p !== 'bf16') throw new Error(`${where}: precision must be 'fp32' or 'bf16', got '${String(p)}'`);
  return p;
}

/** imgs in bfloat16 on their device (for precision 'bf16'). */
export function toBf16(imgs: Tensor): Tensor {
  if (imgs.device === 'cpu') warnOnceForCpuBf16();
  return imgs.dtype === 'bfloat16' ? imgs : imgs.to(imgs.device, 'bfloat16');
}

/** The environment variable that limits oneDNN's instruction set, if one is set (ONEDNN_ wins, as in oneDNN 2.x). */
function isaLimit(env: NodeJS.ProcessEnv): 'ONEDNN_MAX_CPU_ISA' | 'DNNL_MAX_CPU_ISA' | undefined {
  return env.ONEDNN_MAX_CPU_ISA ? 'ONEDNN_MAX_CPU_ISA' : env.DNNL_MAX_CPU_ISA ? 'DNNL_MAX_CPU_ISA' : undefined;
}

/**
 * Why oneDNN runs without AMX on a CPU that has it (undefined where it uses AMX, the CPU has none, or oneDNN is not
 * loaded): ONEDNN_MAX_CPU_ISA / DNNL_MAX_CPU_ISA in the environment, a kernel that does not enable the AMX state
 * (before Linux 5.16), or one that refused this process the tile data.
 */
export function amxUnusedReason(d: NativeDnnlInfo, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (!d.available || d.amx || !d.amxSupport?.cpu) return undefined;
  const cap = isaLimit(env);
  if (cap) return `${cap}=${env[cap]} limits oneDNN to ${d.isa}`;
  if (!d.amxSupport.kernel) return `the kernel does not enable the AMX state (XCR0; Linux 5.16 or later does)`;
  if (!d.amxSupport.permitted)
    return `the kernel refused this process the AMX tile data (arch_prctl ARCH_REQ_XCOMP_PERM; it does so where a thread's alternate signal stack is too small for it)`;
  return `oneDNN ${d.version} chose ${d.isa} on this CPU`;
}

/**
 * Why bf16 products on the CPU cannot run natively through oneDNN, which leaves them to the BLAS on float32 copies
 * (undefined where they can): oneDNN not loaded, no bf16 kernel, AVX-512 without AVX512-BF16 or AMX (oneDNN would
 * only emulate bf16), or an ISA limit in the environment.
 */
export function notNativeReason(d: NativeDnnlInfo, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (d.bf16Products) return undefined;
  if (!d.available) return d.reason ?? 'oneDNN could not be loaded';
  const cap = isaLimit(env);
  const limit = cap ? `${cap}=${env[cap]} limits oneDNN ${d.version} to ${d.isa}` : undefined;
  if (!d.bf16Matmul)
    return limit ? `${limit}, where it has no bf16 kernel` : `oneDNN ${d.version} has no bf16 kernel on this CPU (isa ${d.isa}; oneDNN 2.x needs AVX-512)`;
  return limit
    ? `${limit}, where it would emulate bf16, slower than the BLAS in float32`
    : `this CPU has neither AVX512-BF16 nor AMX (oneDNN ${d.version}, isa ${d.isa}), and oneDNN's bf16 emulation is slower than the BLAS in float32`;
}

/**
 * What bf16 on this CPU should be told about, if anything: MAE_BF16_CPU_NOT_NATIVE where its products cannot run
 * natively through oneDNN (notNativeReason), and MAE_BF16_CPU_AMX_UNUSED where they run on AVX512-BF16 although the
 * CPU has AMX, for a reason other than a limit the environment sets; `note` says it (the warning's text, and the
 * oneDNN line of `mae bench`'s machine).
 */
export function cpuBf16Note(d: NativeDnnlInfo, env: NodeJS.ProcessEnv = process.env): { code: string; note: string } | undefined {
  const notNative = notNativeReason(d, env);
  if (notNative !== undefined)
    return {
      code: 'MAE_BF16_CPU_NOT_NATIVE',
      note: `${notNative}; its matrix products run through the BLAS on float32 copies, about the speed of precision 'fp32' (see \`mae info\`)`,
    };
  const amx = amxUnusedReason(d, env);
  if (amx === undefined || isaLimit(env)) return undefined;
  return {
    code: 'MAE_BF16_CPU_AMX_UNUSED',
    note: `this CPU has AMX, but oneDNN runs its bf16 products on ${d.isa} instead: ${amx} (see \`mae info\`)`,
  };
}

/** The warning for bf16 on this CPU, if any: cpuBf16Note's, as a process warning says it. */
export function cpuBf16Warning(d: NativeDnnlInfo, env: NodeJS.ProcessEnv = process.env): { code: string; message: string } | undefined {
  const n = cpuBf16Note(d, env);
  return n && { code: n.code, message: `precision 'bf16' on the CPU: ${n.note}` };
}

/**
 * For a float32 training run on a CPU whose bf16 matrix products run natively (oneDNN on AVX512-BF16 or AMX): a tip
 * that precision 'bf16' trains faster there (benchmarks/README.md: 1.8-2x on a Zen 4); undefined elsewhere, and
 * where a limit in the environment or a missing oneDNN keeps bf16 from its native kernels (cpuBf16Note says why).
 */
export function cpuBf16Tip(d: NativeDnnlInfo = native.info().dnnl): string | undefined {
  if (!d.bf16Products) return undefined;
  return `tip: this CPU runs bf16 matrix products natively (oneDNN ${d.version}, ${d.isa}): --precision bf16 trains faster, with bfloat16 activations and float32 master weights, optimizer state and loss`;
}

let cpuBf16Checked = false;

/** Once per thread, at the first bf16 computation on the CPU: cpuBf16Warning's warning, if any. */
function warnOnceForCpuBf16(): void {
  if (cpuBf16Checked) return;
  cpuBf16Checked = true;
  const w = cpuBf16Warning(native.info().dnnl);
  if (w) process.emitWarning(w.message, { code: w.code });
}

/** x in float32 (features handed to the caller are float32 whatever the precision they were computed in). */
export function toFloat32(x: Tensor): Tensor {
  return x.dtype === 'float32' ? x : x.to(x.device, 'float32');
}
