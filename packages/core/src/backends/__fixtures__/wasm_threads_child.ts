// Child process of wasm_threads.test.ts: initBackend('wasm') with the thread count the env asks
// for (VIT_WASM_THREADS), then the shared work; prints "RESULT <json>" and exits by itself (the
// pthread workers must not keep the process alive).
import '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { getThreadsCount } from '@tensorflow/tfjs-backend-wasm';
import { initBackend } from '../../backend.js';
import { wasmThreadsStatus } from '../wasm_threads.js';
import { runWork } from './wasm_threads_work.js';

const init = await initBackend('wasm', { quiet: true });
const work = runWork();
console.log(`RESULT ${JSON.stringify({ detail: init.detail, wasmThreads: init.wasmThreads, threads: getThreadsCount(), status: wasmThreadsStatus(), ...work })}`);
