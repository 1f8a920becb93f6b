// Replaced with package.json's version when the package is built (tsup's `define`, tsup.shared.ts)
// and in tests (vitest.shared.ts), so a release reports the version it was published as. Sources
// run without either (a test's child process, an esbuild bundle of src/) say '0.0.0-source'; the
// version test, the pack-install test and the release test check that the builds do not.
declare const __VIT_VERSION__: string | undefined;

/** The library version, written into checkpoints' config and converted files' metadata. */
export const VERSION: string = typeof __VIT_VERSION__ === 'string' ? __VIT_VERSION__ : '0.0.0-source';
