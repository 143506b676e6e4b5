/**
 * The check that every rank of a data-parallel run was started the same way: each rank hashes each of its settings
 * (and a fingerprint of its data), the hashes are gathered, and a rank whose hash of a setting differs from rank 0's
 * makes every rank refuse to train with the same Error, naming the setting and both values. Ranks started with
 * different settings would otherwise train different models, or wait forever in collectives the others never issue.
 */
import { createHash } from 'node:crypto';
import { expectDataset, expectObject, expectString } from '../check.js';
import type { Dataset } from '../data/index.js';
import type { Tensor } from '../tensor.js';
import { expectCommunicator, type Communicator } from './comm.js';

/** An Error that every rank raises at the same point (a collective check): no rank needs to tell the others. */
export class AgreedError extends Error {}

const sha = (text: string) => createHash('sha256').update(text).digest('hex').slice(0, 16);

/**
 * Throws an AgreedError on every rank when some rank's value of a setting differs from rank 0's. `settings` values
 * are compared as JSON; `what` names them in the message ("run options", "the data").
 */
export function checkSameSettings(comm: Communicator, settings: Record<string, unknown>, what: string): void {
  expectCommunicator('checkSameSettings', 'comm', comm);
  expectObject('checkSameSettings', 'settings', settings);
  expectString('checkSameSettings', 'what', what, 'a description for messages');
  if (comm.size === 1) return;
  const mine: Record<string, [string, string]> = {};
  for (const [k, v] of Object.entries(settings)) {
    const json = JSON.stringify(v ?? null);
    mine[k] = [sha(json), json.length > 120 ? json.slice(0, 117) + '...' : json];
  }
  const all = comm.allgatherJson(mine, `the comparison of ${what} between ranks`);
  const keys = [...new Set(all.flatMap((s) => Object.keys(s)))].sort();
  for (const k of keys)
    for (let r = 1; r < all.length; r++) {
      const a = all[0]![k], b = all[r]![k];
      if (a?.[0] !== b?.[0])
        throw new AgreedError(
          `the ranks were started with different ${what}: ${k} is ${a?.[1] ?? '(unset)'} on rank 0 but ${b?.[1] ?? '(unset)'} on rank ${r}; every rank must run the same command on the same data`,
        );
    }
}

/** A fingerprint of a dataset's contents: its size and shape, and a hash of 16 samples spread over it. */
export async function datasetFingerprint(ds: Dataset): Promise<string> {
  expectDataset('datasetFingerprint', 'dataset', ds);
  const h = createHash('sha256');
  h.update(JSON.stringify([ds.length, ds.numClasses, ds.channels, ds.height, ds.width]));
  const picks = new Set(Array.from({ length: Math.min(16, ds.length) }, (_, k) => Math.floor((k * ds.length) / Math.min(16, ds.length))));
  for (const i of picks) {
    const s = await ds.get(i);
    h.update(new Uint8Array(s.image.buffer, s.image.byteOffset, s.image.byteLength));
    h.update(String(s.label));
  }
  return h.digest('hex').slice(0, 16);
}

/** A fingerprint of a model's weights: its config, and 64 values spread over each parameter. */
export function modelFingerprint(model: { config: unknown; namedParameters(): [string, Tensor][] }): string {
  const h = createHash('sha256');
  h.update(JSON.stringify(model.config));
  for (const [name, p] of model.namedParameters()) {
    const v = p.dataSync();
    const picks = new Float32Array(Math.min(64, v.length));
    for (let k = 0; k < picks.length; k++) picks[k] = v[Math.floor((k * v.length) / picks.length)]!;
    h.update(`${name} ${p.shape.join('x')}`);
    h.update(new Uint8Array(picks.buffer));
  }
  return h.digest('hex').slice(0, 16);
}
