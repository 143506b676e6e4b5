// Tests for lib/io/safetensors.ts: round trips, hand-built files, F16/BF16/I64 decoding, the real parity fixture,
// and one error per kind of corrupt file, checked through both parseSafetensors and readSafetensors.
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  f16ToNumber,
  parseSafetensors,
  readSafetensors,
  requireFloat32,
  serializeSafetensors,
  writeSafetensors,
  type RawTensor,
} from '../../lib/io/safetensors.js';

const FIXTURES = fileURLToPath(new URL('../fixtures/mae-parity/', import.meta.url));

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mae-safetensors-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Builds a file by hand: length field (optionally overridden), header text or JSON (unpadded), data bytes. */
function build(header: unknown, data: Uint8Array | number[] = [], lengthOverride?: bigint): Uint8Array {
  let headerBytes: Uint8Array;
  if (header instanceof Uint8Array) headerBytes = header;
  else headerBytes = new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + headerBytes.length + data.length);
  new DataView(out.buffer).setBigUint64(0, lengthOverride ?? BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  out.set(data, 8 + headerBytes.length);
  return out;
}

/** Little-endian bytes of 16-bit values. */
function u16le(values: number[]): number[] {
  return values.flatMap((v) => [v & 0xff, v >> 8]);
}

describe('round trip', () => {
  const tensors = new Map<string, RawTensor>([
    ['b.matrix', { shape: [2, 3], data: new Float32Array([1, -2, 3.5, 1e-30, Infinity, -0]) }],
    ['a.ints', { shape: [4], data: new Int32Array([0, -1, 2147483647, -2147483648]) }],
    ['scalar', { shape: [], data: new Float32Array([42.25]) }],
    ['empty', { shape: [0, 5], data: new Float32Array(0) }],
    ['empty.ints', { shape: [3, 0], data: new Int32Array(0) }],
    ['nan', { shape: [1, 1, 1], data: new Float32Array([NaN]) }],
  ]);

  it('serializes and parses back every tensor and the metadata', () => {
    const bytes = serializeSafetensors(tensors, { format: 'pt', note: 'ünïcode' });
    const { tensors: back, metadata } = parseSafetensors(bytes);
    expect(metadata).toEqual({ format: 'pt', note: 'ünïcode' });
    expect([...back.keys()]).toEqual(['a.ints', 'b.matrix', 'empty', 'empty.ints', 'nan', 'scalar']);
    for (const [name, t] of tensors) {
      const r = back.get(name)!;
      expect(r.shape).toEqual(t.shape);
      expect(r.data.constructor).toBe(t.data.constructor);
      expect(r.dtype).toBe(t.data instanceof Float32Array ? 'F32' : 'I32');
      expect(Array.from(r.data)).toEqual(Array.from(t.data));
    }
    expect(Object.is(back.get('b.matrix')!.data[5], -0)).toBe(true);
  });

  it('pads the header with spaces to a multiple of 8 and sorts names', () => {
    const bytes = serializeSafetensors({ z: tensors.get('scalar')!, a: tensors.get('a.ints')! });
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    expect(n % 8).toBe(0);
    const text = new TextDecoder().decode(bytes.subarray(8, 8 + n));
    expect(text.trimEnd()).toBe(
      '{"a":{"dtype":"I32","shape":[4],"data_offsets":[0,16]},"z":{"dtype":"F32","shape":[],"data_offsets":[16,20]}}',
    );
    expect(/^ *$/.test(text.slice(text.trimEnd().length))).toBe(true);
    expect(bytes.length).toBe(8 + n + 20);
  });

  it('writes atomically to disk and reads back, also through a Record', async () => {
    const path = join(dir, 'nested', 'round.safetensors');
    await writeSafetensors(path, Object.fromEntries(tensors), { k: 'v' });
    expect(await readdir(join(dir, 'nested'))).toEqual(['round.safetensors']);
    const { tensors: back, metadata } = await readSafetensors(path);
    expect(metadata).toEqual({ k: 'v' });
    expect(Array.from(back.get('b.matrix')!.data)).toEqual([1, -2, 3.5, Math.fround(1e-30), Infinity, -0]);
    expect(back.get('empty')!.shape).toEqual([0, 5]);
    expect(back.get('scalar')!.shape).toEqual([]);
    // opts.select: the tensors it declines are neither read nor returned; it sees each name, dtype and the metadata
    const asked: string[] = [];
    const some = await readSafetensors(path, { select: (name, dtype, meta) => (asked.push(`${name} ${dtype} ${meta.k}`), name === 'b.matrix') });
    expect([...some.tensors.keys()]).toEqual(['b.matrix']);
    expect(asked).toEqual([...back].map(([name, t]) => `${name} ${t.dtype} v`));
  });

  it('reads deferred tensors one at a time, as their bytes are written, into the same file', async () => {
    const path = join(dir, 'deferred.safetensors');
    const order: string[] = [];
    const deferred = Object.fromEntries(
      [...tensors].map(([name, t]) => [name, { shape: t.shape, dtype: t.data instanceof Float32Array ? 'F32' : 'I32', read: () => (order.push(name), t.data) }] as const),
    );
    await writeSafetensors(path, deferred, { k: 'v' });
    expect(order).toEqual([...tensors.keys()].sort());
    expect(await readFile(path)).toEqual(Buffer.from(serializeSafetensors(tensors, { k: 'v' })));
    const wrong = { x: { shape: [2], dtype: 'F32' as const, read: () => new Float32Array(3) } };
    await expect(writeSafetensors(join(dir, 'wrong.safetensors'), wrong)).rejects.toThrow(/tensor "x": shape \[2\] holds 2 values but data has 3/);
    expect(await readdir(dir)).not.toContain('wrong.safetensors');
  });

  it('rejects bad input to the writer', () => {
    const short = { shape: [3], data: new Float32Array(2) };
    expect(() => serializeSafetensors({ x: short })).toThrow(/holds 3 values but data has 2/);
    const negative = { shape: [-1], data: new Float32Array(0) };
    expect(() => serializeSafetensors({ x: negative })).toThrow(/non-negative integers/);
    const f64 = { shape: [1], data: new Float64Array(1) } as unknown as RawTensor;
    expect(() => serializeSafetensors({ x: f64 })).toThrow(/Float32Array or an Int32Array/);
    const scalar = { shape: [], data: new Float32Array(1) };
    expect(() => serializeSafetensors({ __metadata__: scalar })).toThrow(/invalid tensor name/);
  });

  it('writes names of any well-formed Unicode as UTF-8 (read back the same), refuses lone surrogates', () => {
    const one = { shape: [1], data: Float32Array.of(1) };
    const names = ['blocks.0.attn "qkv"\\/', 'température', '层.权重', 'emoji 🙂', 'tab\tnewline\n', ' '];
    const bytes = serializeSafetensors(new Map(names.map((n) => [n, one])), { 'clé 🙂': 'valeur "x"\n' });
    const { tensors, metadata } = parseSafetensors(bytes);
    expect([...tensors.keys()].sort()).toEqual([...names].sort());
    expect(metadata).toEqual({ 'clé 🙂': 'valeur "x"\n' });
    // JSON.stringify writes a lone surrogate as an escape (\ud800) that strict readers (the reference's) refuse
    expect(() => serializeSafetensors({ 'x\ud800': one })).toThrow(/tensor "x\\ud800": the name is not well-formed Unicode \(a lone surrogate\)/);
    expect(() => serializeSafetensors({ x: one }, { k: 'v\udc00' })).toThrow(/metadata "k": not well-formed Unicode \(a lone surrogate\)/);
    expect(() => serializeSafetensors({ x: one }, { 'k\udc00': 'v' })).toThrow(/metadata "k\\udc00": not well-formed Unicode/);
  });
});

describe('hand-built files', () => {
  it('reads a header written byte by byte, with regions out of order and an unaligned F32', () => {
    const data = new Uint8Array(13);
    const view = new DataView(data.buffer);
    view.setFloat32(1, -1.5, true); // f: bytes [1, 5), not 4-byte aligned
    view.setInt32(5, -7, true); // i: [5, 9)
    view.setFloat32(9, 0.25, true); // g: [9, 13)
    data[0] = 200; // u: [0, 1)
    const bytes = build({
      g: { dtype: 'F32', shape: [], data_offsets: [9, 13] },
      f: { dtype: 'F32', shape: [1], data_offsets: [1, 5] },
      __metadata__: { format: 'pt' },
      u: { dtype: 'U8', shape: [1, 1], data_offsets: [0, 1] },
      i: { dtype: 'I32', shape: [1], data_offsets: [5, 9] },
    }, data);
    // Parse from an odd byte offset inside a larger buffer as well.
    const shifted = new Uint8Array(bytes.length + 3);
    shifted.set(bytes, 3);
    for (const input of [bytes, shifted.subarray(3)]) {
      const { tensors, metadata } = parseSafetensors(input);
      expect(metadata).toEqual({ format: 'pt' });
      expect([...tensors.keys()]).toEqual(['g', 'f', 'u', 'i']);
      expect(Array.from(tensors.get('f')!.data)).toEqual([-1.5]);
      expect(Array.from(tensors.get('g')!.data)).toEqual([0.25]);
      expect(Array.from(tensors.get('i')!.data)).toEqual([-7]);
      expect(tensors.get('u')!.data).toEqual(new Int32Array([200]));
      expect(tensors.get('u')!.dtype).toBe('U8');
    }
  });

  it('decodes F16 exactly: normals, largest finite, subnormals, zeros, infinities, NaN', () => {
    const cases: [number, number][] = [
      [0x3c00, 1],
      [0xc100, -2.5],
      [0x7bff, 65504],
      [0x0001, 2 ** -24],
      [0x03ff, 1023 * 2 ** -24],
      [0x0400, 2 ** -14],
      [0x3555, 0.333251953125],
      [0x0000, 0],
      [0x7c00, Infinity],
      [0xfc00, -Infinity],
    ];
    const bits = [...cases.map(([b]) => b), 0x8000, 0x7e00];
    const bytes = build({ h: { dtype: 'F16', shape: [bits.length], data_offsets: [0, 2 * bits.length] } }, u16le(bits));
    const t = parseSafetensors(bytes).tensors.get('h')!;
    expect(t.dtype).toBe('F16');
    expect(t.data).toBeInstanceOf(Float32Array);
    cases.forEach(([, value], i) => expect(t.data[i]).toBe(value));
    expect(Object.is(t.data[cases.length], -0)).toBe(true);
    expect(Number.isNaN(t.data[cases.length + 1])).toBe(true);
    expect(f16ToNumber(0x7c01)).toBeNaN();
  });

  it('decodes BF16 as the high half of an F32', () => {
    const cases: [number, number][] = [
      [0x3f80, 1],
      [0xc020, -2.5],
      [0x477f, 65280],
      [0x0001, 2 ** -133],
      [0x8000, -0],
      [0x7f80, Infinity],
      [0xff80, -Infinity],
    ];
    const bits = [...cases.map(([b]) => b), 0x7fc0];
    const bytes = build({ b: { dtype: 'BF16', shape: [2, 4], data_offsets: [0, 16] } }, u16le(bits));
    const t = parseSafetensors(bytes).tensors.get('b')!;
    expect(t.shape).toEqual([2, 4]);
    cases.forEach(([, value], i) => expect(Object.is(t.data[i], value)).toBe(true));
    expect(Number.isNaN(t.data[7])).toBe(true);
  });

  it('reads I64 within int32 range, and I8 and BOOL', () => {
    const data = new Uint8Array(8 * 4 + 2 + 2);
    const view = new DataView(data.buffer);
    [0n, -1n, 2147483647n, -2147483648n].forEach((v, i) => view.setBigInt64(8 * i, v, true));
    data.set([0xff, 0x7f], 32);
    data.set([1, 0], 34);
    const bytes = build({
      l: { dtype: 'I64', shape: [4], data_offsets: [0, 32] },
      s: { dtype: 'I8', shape: [2], data_offsets: [32, 34] },
      t: { dtype: 'BOOL', shape: [2], data_offsets: [34, 36] },
    }, data);
    const { tensors } = parseSafetensors(bytes);
    expect(tensors.get('l')!.data).toEqual(new Int32Array([0, -1, 2147483647, -2147483648]));
    expect(tensors.get('s')!.data).toEqual(new Int32Array([-1, 127]));
    expect(tensors.get('t')!.data).toEqual(new Int32Array([1, 0]));
  });

  it('reads every dtype of the format: F64 and F8 as float32, I16 U16 U32 U64 as int32', () => {
    const data = new Uint8Array(16 + 4 + 4 + 8 + 16 + 6 + 6);
    const view = new DataView(data.buffer);
    view.setFloat64(0, 0.1, true);
    view.setFloat64(8, -1e300, true);
    view.setInt16(16, -32768, true);
    view.setInt16(18, 7, true);
    view.setUint16(20, 65535, true);
    view.setUint16(22, 0, true);
    view.setUint32(24, 2147483647, true);
    view.setUint32(28, 3, true);
    view.setBigUint64(32, 5n, true);
    view.setBigUint64(40, 2147483647n, true);
    // F8_E4M3 (e4m3fn): 1, -448 (largest), 2^-9 (smallest subnormal), 0.5 + 0.0625, NaN, -0
    data.set([0x38, 0xfe, 0x01, 0x31, 0x7f, 0x80], 48);
    // F8_E5M2 (the high byte of an F16): 1, -57344 (largest), 2^-16, Infinity, NaN, 1.5
    data.set([0x3c, 0xfb, 0x01, 0x7c, 0x7e, 0x3e], 54);
    const bytes = build({
      d: { dtype: 'F64', shape: [2], data_offsets: [0, 16] },
      h: { dtype: 'I16', shape: [2], data_offsets: [16, 20] },
      u: { dtype: 'U16', shape: [2], data_offsets: [20, 24] },
      w: { dtype: 'U32', shape: [2], data_offsets: [24, 32] },
      q: { dtype: 'U64', shape: [2], data_offsets: [32, 48] },
      e4: { dtype: 'F8_E4M3', shape: [6], data_offsets: [48, 54] },
      e5: { dtype: 'F8_E5M2', shape: [2, 3], data_offsets: [54, 60] },
    }, data);
    const { tensors } = parseSafetensors(bytes);
    expect(tensors.get('d')).toEqual({ dtype: 'F64', shape: [2], data: Float32Array.of(0.1, -Infinity) });
    expect(tensors.get('h')!.data).toEqual(Int32Array.of(-32768, 7));
    expect(tensors.get('u')!.data).toEqual(Int32Array.of(65535, 0));
    expect(tensors.get('w')!.data).toEqual(Int32Array.of(2147483647, 3));
    expect(tensors.get('q')!.data).toEqual(Int32Array.of(5, 2147483647));
    expect(Array.from(tensors.get('e4')!.data)).toEqual([1, -448, 2 ** -9, 0.5625, NaN, -0]);
    expect(tensors.get('e4')!.data).toBeInstanceOf(Float32Array);
    expect(Array.from(tensors.get('e5')!.data)).toEqual([1, -57344, 2 ** -16, Infinity, NaN, 1.5]);
  });

  it('accepts an empty header object, and keeps a metadata key named __proto__ as a key', () => {
    expect(parseSafetensors(build('{}  ')).tensors.size).toBe(0);
    const { metadata } = parseSafetensors(build('{"__metadata__": {"__proto__": "x", "a": "b"}}'));
    expect(Object.keys(metadata)).toEqual(['__proto__', 'a']);
    expect(Object.getPrototypeOf(metadata)).toBe(Object.prototype);
  });
});

describe('corrupt files', () => {
  const f32 = (offsets: unknown, shape: unknown = [1]) => ({ dtype: 'F32', shape, data_offsets: offsets });
  const i64 = new Uint8Array(8);
  new DataView(i64.buffer).setBigInt64(0, 2147483648n, true);

  const cases: [string, Uint8Array, RegExp][] = [
    ['file shorter than 8 bytes', new Uint8Array(5), /5 bytes, shorter than the 8-byte/],
    ['empty file', new Uint8Array(0), /0 bytes, shorter than the 8-byte/],
    ['header length beyond the file', build('{}', [], 100n), /header length 100 is larger than the 2 bytes/],
    ['absurd header length', build('{}', [], 1n << 40n), /larger than the 104857600-byte limit/],
    ['header not UTF-8', build(new Uint8Array([0x7b, 0xff, 0xfe, 0x7d])), /header is not valid UTF-8/],
    // the format: the header MUST begin with '{' (padding is allowed after it only)
    ['header after spaces', build('  {}'), /header does not begin with '\{' \(byte 0x20\)/],
    ['header after a UTF-8 BOM', build('\ufeff{}'), /header does not begin with '\{' \(byte 0xef\)/],
    ['header not JSON', build('{"a": '), /header is not valid JSON/],
    ['empty header', build(''), /header does not begin with '\{' \(empty\)/],
    ['header an array', build('[1, 2]'), /header does not begin with '\{' \(byte 0x5b\)/],
    ['header null', build('null'), /header does not begin with '\{' \(byte 0x6e\)/],
    ['entry not an object', build({ x: 3 }), /tensor "x": header entry is not an object/],
    [
      'unknown dtype',
      build({ x: { dtype: 'F8_E9', shape: [1], data_offsets: [0, 1] } }, [0]),
      /tensor "x": unknown or unsupported dtype "F8_E9"/,
    ],
    [
      'missing dtype',
      build({ x: { shape: [1], data_offsets: [0, 4] } }, [0, 0, 0, 0]),
      /unknown or unsupported dtype undefined/,
    ],
    [
      'negative dimension',
      build({ x: f32([0, 4], [-1]) }, new Uint8Array(4)),
      /shape \[-1\] is not an array of non-negative integers/,
    ],
    ['fractional dimension', build({ x: f32([0, 4], [1.5]) }, new Uint8Array(4)), /shape \[1.5\] is not an array/],
    ['shape not an array', build({ x: f32([0, 4], '1') }, new Uint8Array(4)), /shape "1" is not an array/],
    ['offsets of wrong length', build({ x: f32([0]) }, new Uint8Array(4)), /data_offsets \[0\] is not \[begin, end\]/],
    [
      'offsets not numbers',
      build({ x: f32(['0', 4]) }, new Uint8Array(4)),
      /data_offsets \["0",4\] is not \[begin, end\]/,
    ],
    ['negative offset', build({ x: f32([-4, 0]) }, new Uint8Array(4)), /data_offsets \[-4,0\] is not/],
    ['begin after end', build({ x: f32([4, 0]) }, new Uint8Array(4)), /data_offsets \[4, 0\] has begin after end/],
    [
      'size mismatch',
      build({ x: f32([0, 4], [2]) }, new Uint8Array(8)),
      /span 4 bytes, but shape \[2\] of F32 needs 2 x 4 = 8 bytes/,
    ],
    [
      'overlap',
      build({ a: f32([0, 8], [2]), b: f32([4, 12], [2]) }, new Uint8Array(12)),
      /"a" \[0, 8\) and "b" \[4, 12\) overlap/,
    ],
    ['duplicate region', build({ a: f32([0, 4]), b: f32([0, 4]) }, new Uint8Array(4)), /overlap/],
    // the data must be covered exactly, as the format's own reader requires
    [
      'a tensor named twice (JSON.parse keeps the last)',
      build('{"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}, "a": {"dtype": "U8", "shape": [1], "data_offsets": [1, 2]}}', [1, 2]),
      /data bytes \[0, 1\) belong to no tensor \(a damaged header, or a tensor named twice in it\)/,
    ],
    ['a hole between regions', build({ a: f32([0, 4]), b: f32([8, 12]) }, new Uint8Array(12)), /data bytes \[4, 8\) belong to no tensor/],
    ['bytes after the last region', build({ x: { dtype: 'U8', shape: [1], data_offsets: [0, 1] } }, [5, 9, 9]), /data bytes \[1, 3\) at the end of the file belong to no tensor/],
    [
      'truncated data',
      build({ a: f32([0, 4]), b: f32([4, 8]) }, new Uint8Array(6)),
      /truncated file: tensor "b" needs data bytes \[4, 8\) but the data buffer holds only 6 bytes/,
    ],
    ['metadata not an object', build({ __metadata__: [] }), /"__metadata__" is not an object/],
    [
      'metadata value not a string',
      build({ __metadata__: { epoch: 3 } }),
      /metadata value for "epoch" is not a string/,
    ],
    [
      'I64 out of int32 range',
      build({ l: { dtype: 'I64', shape: [1], data_offsets: [0, 8] } }, i64),
      /I64 value 2147483648 at index 0 does not fit in int32/,
    ],
    [
      'U32 out of int32 range',
      build({ l: { dtype: 'U32', shape: [1], data_offsets: [0, 4] } }, [0, 0, 0, 0x80]),
      /U32 value 2147483648 at index 0 does not fit in int32/,
    ],
    [
      'U64 out of int32 range',
      build({ l: { dtype: 'U64', shape: [1], data_offsets: [0, 8] } }, [0, 0, 0, 0, 1, 0, 0, 0]),
      /U64 value 4294967296 at index 0 does not fit in int32/,
    ],
    [
      'BOOL byte not 0 or 1',
      build({ t: { dtype: 'BOOL', shape: [1], data_offsets: [0, 1] } }, [2]),
      /BOOL byte 2 at index 0/,
    ],
  ];

  it.each(cases)('%s: parseSafetensors names the source and the problem', (_, bytes, pattern) => {
    expect(() => parseSafetensors(bytes, 'bad.safetensors')).toThrow(pattern);
    expect(() => parseSafetensors(bytes, 'bad.safetensors')).toThrow(/^bad\.safetensors: /);
  });

  it('readSafetensors gives the same errors, naming the file path', async () => {
    for (const [name, bytes, pattern] of cases) {
      const path = join(dir, `${name.replace(/\W+/g, '-')}.safetensors`);
      await writeFile(path, bytes);
      const err = await readSafetensors(path).then(
        () => new Error('no error'),
        (e: Error) => e,
      );
      expect(err.message, name).toMatch(pattern);
      expect(err.message.startsWith(`${path}: `), name).toBe(true);
    }
  });

  it('readSafetensors names a missing file', async () => {
    const path = join(dir, 'missing.safetensors');
    await expect(readSafetensors(path)).rejects.toThrow(`${path}: cannot open safetensors file`);
  });
});

describe('MAE parity fixture', () => {
  it('parses parity.safetensors with the official names and shapes', async () => {
    const { tensors, metadata } = await readSafetensors(join(FIXTURES, 'parity.safetensors'));
    expect(metadata).toEqual({});
    expect(tensors.size).toBe(62);
    const shapes = Object.fromEntries([...tensors].map(([k, t]) => [k, t.shape]));
    expect(shapes['cls_token']).toEqual([1, 1, 48]);
    expect(shapes['pos_embed']).toEqual([1, 17, 48]);
    expect(shapes['patch_embed.proj.weight']).toEqual([48, 3, 6, 6]);
    expect(shapes['blocks.0.attn.qkv.weight']).toEqual([144, 48]);
    expect(shapes['decoder_blocks.1.mlp.fc2.weight']).toEqual([24, 96]);
    expect(shapes['decoder_pred.weight']).toEqual([108, 24]);
    const cls = tensors.get('cls_token')!.data;
    expect([cls[0], cls[1]]).toEqual([0.02217661775648594, -0.0065726167522370815]);
    const qkv = tensors.get('blocks.0.attn.qkv.weight')!.data;
    expect([qkv[0], qkv[1]]).toEqual([-0.02923320047557354, 0.05099562183022499]);
    expect(requireFloat32(tensors).size).toBe(62);
  });

  it('parses parity-io.safetensors (reference loss and mask)', async () => {
    const { tensors } = await readSafetensors(join(FIXTURES, 'parity-io.safetensors'));
    expect(tensors.get('images')!.shape).toEqual([2, 3, 24, 24]);
    expect(tensors.get('loss')!.data[0]).toBe(Math.fround(1.3281584696285675));
    const mask = Array.from(tensors.get('mask')!.data.subarray(0, 16));
    expect(mask).toEqual([0, 1, 0, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1]);
    expect(mask.reduce((a, b) => a + b, 0)).toBe(12);
  });

  it('requireFloat32 rejects integer tensors, naming them', () => {
    const map = new Map<string, RawTensor>([['n', { shape: [1], data: new Int32Array(1) }]]);
    expect(() => requireFloat32(map, 'ckpt.safetensors')).toThrow(
      'ckpt.safetensors: tensor "n" is not a floating point tensor',
    );
  });
});
