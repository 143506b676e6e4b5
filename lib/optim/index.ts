export { AdamW, type AdamWOptions } from './adamw.js';
export { cosineLr, scaledLr } from './schedule.js';
