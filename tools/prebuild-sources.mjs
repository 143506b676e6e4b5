// Which sources the prebuilt binaries were made from, so that a package never ships binaries older than its code.
//   sourceDigests(root)             sha256 of every file the binaries are built from: native/, bindings/,
//                                   CMakeLists.txt and the two prebuild scripts, by path relative to root
//   writeManifest(root, dir, cuda)  writes dir/SOURCES.json: those digests and whether the CUDA library is there
//                                   (tools/prebuild.mjs, after a successful build)
//   checkPrebuilds(root, dir, opts) the problems that make dir unfit to pack: no manifest, sources changed, added or
//                                   removed since, no addon, no CUDA library (unless opts.withoutCuda)
// `node tools/prebuild-sources.mjs` (npm's prepack, before `npm pack` and `npm publish`) runs the check on
// prebuilds/<platform>-<arch>/ and exits 1 naming each problem; MAE_PACK_WITHOUT_CUDA=1 accepts binaries made with
// `npm run build:prebuilds -- --no-cuda`.
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

export const MANIFEST = 'SOURCES.json';
const SOURCE_DIRS = ['native', 'bindings'];
const SOURCE_FILES = ['CMakeLists.txt', 'tools/prebuild.mjs', 'tools/prebuild-backend.mjs'];

function listFiles(dir) {
  const out = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...listFiles(p));
    else if (e.isFile()) out.push(p);
  }
  return out;
}

export function sourceDigests(root) {
  const files = [...SOURCE_DIRS.flatMap((d) => (existsSync(join(root, d)) ? listFiles(join(root, d)) : [])), ...SOURCE_FILES.map((f) => join(root, f)).filter((f) => existsSync(f))];
  const digests = {};
  for (const f of files.map((f) => relative(root, f)).sort()) digests[f] = createHash('sha256').update(readFileSync(join(root, f))).digest('hex');
  return digests;
}

export function writeManifest(root, dir, cuda) {
  writeFileSync(join(dir, MANIFEST), JSON.stringify({ cuda, sources: sourceDigests(root) }, null, 1) + '\n');
}

export function checkPrebuilds(root, dir, opts = {}) {
  const rebuild = 'run `npm run build:prebuilds` before packing';
  if (!existsSync(join(dir, 'masked-autoencoder.glibc.node'))) return [`${dir} has no prebuilt addon: ${rebuild}`];
  let manifest;
  try {
    manifest = JSON.parse(readFileSync(join(dir, MANIFEST), 'utf8'));
  } catch (e) {
    return [`${join(dir, MANIFEST)} cannot be read (${e.message}): the binaries' sources are unknown; ${rebuild}`];
  }
  const problems = [];
  const now = sourceDigests(root);
  const was = manifest.sources ?? {};
  const changed = Object.keys(now).filter((f) => f in was && was[f] !== now[f]);
  const added = Object.keys(now).filter((f) => !(f in was));
  const removed = Object.keys(was).filter((f) => !(f in now));
  const list = (fs) => fs.slice(0, 8).join(', ') + (fs.length > 8 ? ` and ${fs.length - 8} more` : '');
  if (changed.length) problems.push(`changed since the binaries were built: ${list(changed)}`);
  if (added.length) problems.push(`added since the binaries were built: ${list(added)}`);
  if (removed.length) problems.push(`removed since the binaries were built: ${list(removed)}`);
  if (problems.length) problems.push(`the prebuilt binaries in ${dir} are older than the sources: ${rebuild}`);
  if (!existsSync(join(dir, 'libmae_cuda.so')) && !opts.withoutCuda)
    problems.push(`${dir} has no libmae_cuda.so, so the package would have no CUDA backend: build it with nvcc on the PATH (${rebuild}), or set MAE_PACK_WITHOUT_CUDA=1 to pack without one`);
  return problems;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === realpathSync(process.argv[1])) {
  const root = join(fileURLToPath(new URL('.', import.meta.url)), '..');
  const dir = join(root, 'prebuilds', `${process.platform}-${process.arch}`);
  const problems = checkPrebuilds(root, dir, { withoutCuda: process.env.MAE_PACK_WITHOUT_CUDA === '1' });
  if (problems.length) {
    for (const p of problems) console.error(`prepack: ${p}`);
    process.exit(1);
  }
}
