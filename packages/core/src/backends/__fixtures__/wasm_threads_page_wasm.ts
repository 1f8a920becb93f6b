// The page's import map points the bare specifier '@tensorflow/tfjs-backend-wasm' here, so the
// dynamic import in initBackend/enableWasmThreads gets the same module instance as the bundle.
export * from '@tensorflow/tfjs-backend-wasm';
