// Replaced with package.json's version when the package is built (tsup's `define`, tsup.shared.ts)
// and in tests (vitest.shared.ts), so a release reports the version it was published as.
declare const __VIT_VERSION__: string;

/** The library version, written into checkpoints' config and converted files' metadata. */
export const VERSION: string = __VIT_VERSION__;
