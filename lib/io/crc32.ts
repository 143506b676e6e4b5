/**
 * CRC-32 (the polynomial 0xEDB88320 of zlib, PNG and zip) of a byte array: zlib's own (Node 20.15 and later, about
 * 4 GB/s), else a byte-at-a-time table.
 */
import zlib from 'node:zlib';

const native = (zlib as { crc32?: (data: Uint8Array) => number }).crc32;

/** The CRC of every byte value, for the table version. */
const TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 of `bytes` with the table (what crc32 falls back to; exported for its test). */
export function crc32Table(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = TABLE[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** CRC-32 of `bytes`, an unsigned 32-bit integer. */
export function crc32(bytes: Uint8Array): number {
  return native ? native(bytes) >>> 0 : crc32Table(bytes);
}
