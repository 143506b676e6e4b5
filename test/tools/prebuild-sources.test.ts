// tools/prebuild-sources.mjs: `npm pack` (prepack) refuses prebuilt binaries older than the native sources.
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { checkPrebuilds as check, writeManifest as write } from '../../tools/prebuild-sources.mjs';
const tmp = mkdtempSync(join(tmpdir(), 'mae-prebuild-sources-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function checkout(name: string): { root: string; dir: string } {
  const root = join(tmp, name);
  const dir = join(root, 'prebuilds', 'linux-x64');
  for (const d of [join(root, 'native/cpu'), join(root, 'bindings'), dir]) mkdirSync(d, { recursive: true });
  writeFileSync(join(root, 'native/cpu/gemm.cpp'), 'int a;\n');
  writeFileSync(join(root, 'bindings/addon.cpp'), 'int b;\n');
  writeFileSync(join(root, 'CMakeLists.txt'), 'project(x)\n');
  writeFileSync(join(dir, 'masked-autoencoder.glibc.node'), 'ELF');
  writeFileSync(join(dir, 'libmae_cuda.so'), 'ELF');
  return { root, dir };
}

describe('prebuilt binaries against their sources', () => {
  it('accepts binaries built from the sources as they are, and names what changed, was added or removed since', () => {
    const { root, dir } = checkout('a');
    write(root, dir, true);
    expect(check(root, dir)).toEqual([]);
    writeFileSync(join(root, 'native/cpu/gemm.cpp'), 'int a2;\n');
    writeFileSync(join(root, 'native/cpu/new.cpp'), 'int c;\n');
    rmSync(join(root, 'bindings/addon.cpp'));
    const p = check(root, dir);
    expect(p).toContain('changed since the binaries were built: native/cpu/gemm.cpp');
    expect(p).toContain('added since the binaries were built: native/cpu/new.cpp');
    expect(p).toContain('removed since the binaries were built: bindings/addon.cpp');
    expect(p.at(-1)).toMatch(/are older than the sources: run `npm run build:prebuilds` before packing/);
  });

  it('refuses binaries without a manifest or an addon, and without the CUDA library unless asked to', () => {
    const { root, dir } = checkout('b');
    expect(check(root, dir)[0]).toMatch(/SOURCES\.json cannot be read .*the binaries' sources are unknown/);
    write(root, dir, false);
    rmSync(join(dir, 'libmae_cuda.so'));
    expect(check(root, dir)).toEqual([expect.stringMatching(/has no libmae_cuda\.so, so the package would have no CUDA backend.*MAE_PACK_WITHOUT_CUDA=1/)]);
    expect(check(root, dir, { withoutCuda: true })).toEqual([]);
    rmSync(join(dir, 'masked-autoencoder.glibc.node'));
    expect(check(root, dir, { withoutCuda: true })[0]).toMatch(/has no prebuilt addon/);
  });

  it('as prepack, checks the checkout it lives in and exits 1 naming each problem', () => {
    const { root, dir } = checkout('c');
    mkdirSync(join(root, 'tools'));
    const script = join(root, 'tools', 'prebuild-sources.mjs');
    copyFileSync(join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'tools', 'prebuild-sources.mjs'), script);
    const run = () => spawnSync(process.execPath, [script], { encoding: 'utf8', env: { ...process.env, MAE_PACK_WITHOUT_CUDA: '' } });
    let r = run();
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^prepack: .*SOURCES\.json cannot be read/m);
    write(root, dir, true);
    r = run();
    expect([r.status, r.stderr]).toEqual([0, '']);
    writeFileSync(join(root, 'bindings/addon.cpp'), 'int b2;\n');
    r = run();
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('prepack: changed since the binaries were built: bindings/addon.cpp');
  });
});
