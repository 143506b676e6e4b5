export { MaskedAutoencoder, checkPrecision, type ForwardOptions, type MaeClass, type ForwardResult, type Reconstruction, type ParamGroup, type Precision } from './model.js';
export { presets, getPreset, presetNames, configFromOfficial, type MaeConfig, type PresetName } from './presets.js';
export { randomMasking, keptCount, type Masking } from './masking.js';
export { get2dSincosPosEmbed, interpolatePosEmbed } from './pos_embed.js';
export type { PretrainedReport } from './pretrained.js';
export { deviceStepCheck, type DeviceStepCheckOptions, type DeviceStepCheckResult } from './device_check.js';
export { maeFlops, type FlopCount } from './flops.js';
