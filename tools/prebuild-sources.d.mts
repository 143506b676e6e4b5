// Types of tools/prebuild-sources.mjs (a plain script: npm's prepack runs it without a build step).
export declare const MANIFEST: string;
export declare function sourceDigests(root: string): Record<string, string>;
export declare function writeManifest(root: string, dir: string, cuda: boolean): void;
export declare function checkPrebuilds(root: string, dir: string, opts?: { withoutCuda?: boolean }): string[];
