export { AdamW, type AdamWOptions, type AdamWState } from './adamw.js';
export { cosineLr, scaledLr } from './schedule.js';
