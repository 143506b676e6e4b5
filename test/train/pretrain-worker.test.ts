// pretrainInWorker's stop(): the run ends at the step boundary after the step under way when the worker sees it, as
// pretrain() with an AbortSignal does, not one step later; a worker ended mid-run (its onEvent threw) leaves neither
// the lock nor the temporary file of a write it was making in the run folder. Uses the compiled package (dist/, npm run build): worker
// threads run compiled JavaScript.
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const { pretrainInWorker } = (await import(new URL('../../dist/lib/train/pretrain.js', import.meta.url).href)) as typeof import('../../lib/train/pretrain.js');

const config = { embedDim: 32, depth: 1, numHeads: 2, decoderEmbedDim: 16, decoderDepth: 1, decoderNumHeads: 2 };

describe('pretrainInWorker', () => {
  it('stop() called at once: one step (as pretrain() with a signal aborted before it starts), stopped, with its checkpoint', async () => {
    const outDir = mkdtempSync(join(tmpdir(), 'mae-worker-stop-'));
    const types: string[] = [];
    // workers: 0: nothing in the run waits on its event loop before the first steps, where a 'stop' message would be read
    const run = pretrainInWorker({ config, data: { kind: 'synthetic', count: 64 }, batchSize: 16, epochs: 2, workers: 0, outDir }, (e) => types.push(e.type));
    run.stop();
    const r = await run.result;
    expect([r.steps, r.stopped]).toEqual([1, true]);
    expect(types.filter((t) => t === 'step')).toHaveLength(1);
    expect(types).toContain('checkpoint');
    run.stop(); // after the end: nothing to stop, no error
  });

  it('stop() called during a step: the run ends after that step', async () => {
    const outDir = mkdtempSync(join(tmpdir(), 'mae-worker-stop-'));
    const big = { embedDim: 128, depth: 4, numHeads: 4, decoderEmbedDim: 64, decoderDepth: 2, decoderNumHeads: 2 };
    const at: number[] = []; // when each step's event arrived
    let seen = -1; // the steps whose events had arrived when stop() was called
    const run = pretrainInWorker({ config: big, data: { kind: 'synthetic', count: 512 }, batchSize: 64, epochs: 1, workers: 0, outDir }, (e) => {
      if (e.type !== 'step') return;
      at.push(performance.now());
      // half a step after step 2's event: in the middle of step 3
      if (e.step === 2)
        setTimeout(() => {
          seen = at.length;
          run.stop();
        }, (at[1]! - at[0]!) / 2);
    });
    const r = await run.result;
    console.log(`pretrainInWorker stop() after ${seen} step events: ended after step ${r.steps} (steps of ${at.slice(1).map((t, i) => (t - at[i]!).toFixed(0)).join(', ')} ms)`);
    expect([r.steps, r.stopped]).toEqual([seen + 1, true]);
  });

  it('an onEvent that throws while the worker writes its checkpoint: the run rejects with its error, and no temporary file is left in the folder', async () => {
    // checkpoints of ~60 MB (weights and AdamW moments) at every step: the worker, ended for the handler's error, is
    // most often in the middle of writing one
    const big = { embedDim: 256, depth: 6, numHeads: 4, decoderEmbedDim: 128, decoderDepth: 2, decoderNumHeads: 2 };
    const left: string[] = [];
    for (let k = 0; k < 4; k++) {
      const outDir = mkdtempSync(join(tmpdir(), 'mae-worker-throw-'));
      const run = pretrainInWorker({ config: big, data: { kind: 'synthetic', count: 64 }, batchSize: 8, epochs: 1, workers: 0, outDir, checkpointEvery: 1 }, (e) => {
        if (e.type !== 'step' || e.step !== 1) return;
        const t = performance.now();
        while (performance.now() - t < 10 * k); // the worker goes on meanwhile: into its checkpoint write
        throw new Error('handler threw');
      });
      await expect(run.result).rejects.toThrow('handler threw');
      left.push(...readdirSync(outDir, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.tmp') || f === '.lock'));
    }
    expect(left).toEqual([]);
  });
});
