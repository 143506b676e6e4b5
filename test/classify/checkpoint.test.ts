import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { RUN_FILES, checkRunFolder, removeRun } from '../../lib/classify/checkpoint.js';

const dir = mkdtempSync(join(tmpdir(), 'mae-run-folder-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('run folders of finetune and linprobe', () => {
  it('a folder holds a run when it has a checkpoint, classifier, results, log or probe head', () => {
    expect([...RUN_FILES]).toEqual(['checkpoint.safetensors', 'classifier.safetensors', 'results.json', 'log.jsonl', 'head.safetensors']);
    const out = join(dir, 'a');
    expect(() => checkRunFolder('finetune', out, false)).not.toThrow(); // no folder
    mkdirSync(out);
    writeFileSync(join(out, 'confusion.png'), 'x'); // a figure alone is no run
    expect(() => checkRunFolder('finetune', out, false)).not.toThrow();
    writeFileSync(join(out, 'log.jsonl'), '');
    expect(() => checkRunFolder('linprobe', out, undefined)).toThrow(
      `linprobe: ${out} holds a run already (log.jsonl): choose another folder (--out), or start again there with --overwrite (overwrite), which removes that run's files`,
    );
    expect(() => checkRunFolder('linprobe', out, true, join(dir, 'elsewhere'))).not.toThrow();
    // overwriting the checkpoint the run starts from: the folder or its checkpoint file, however the path is written
    writeFileSync(join(out, 'checkpoint.safetensors'), 'x');
    for (const ck of [out, `${out}/`, join(out, 'checkpoint.safetensors'), join(out, '..', 'a')])
      expect(() => checkRunFolder('finetune', out, true, ck), ck).toThrow(`finetune: ${out} holds the checkpoint this run starts from (${ck}), which --overwrite would remove: choose another folder (--out)`);
    writeFileSync(join(out, 'weights.pth'), 'x'); // a checkpoint that overwriting keeps
    expect(() => checkRunFolder('finetune', out, true, join(out, 'weights.pth'))).not.toThrow();
  });

  it("removeRun removes a run's files and figures and nothing else", () => {
    const out = join(dir, 'b');
    mkdirSync(join(out, 'reconstructions'), { recursive: true });
    for (const f of [...RUN_FILES, 'confusion.png', 'confusion-test.png', 'notes.txt', 'weights.pth']) writeFileSync(join(out, f), 'x');
    for (const f of ['epoch-001.png', 'step-000012.png', 'mine.png']) writeFileSync(join(out, 'reconstructions', f), 'x');
    removeRun(out);
    expect(readdirSync(out).sort()).toEqual(['confusion-test.png', 'notes.txt', 'reconstructions', 'weights.pth']);
    expect(readdirSync(join(out, 'reconstructions'))).toEqual(['mine.png']);
  });
});
