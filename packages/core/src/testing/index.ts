import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { setTestBackend } from './backend.js';
import { registeredSubjects, runConformance, type DescribeConformanceOptions } from './conformance.js';
import { ConfigError } from '../errors.js';
import { createModel } from '../registry/registry.js';

export * from './conformance.js';
export * from '../parity/compare.js';
export * from './golden.js';
export * from './explain.js';

/**
 * Registers one vitest test per model running the whole conformance suite. Architecture
 * packages call this over `listModels('<arch>_*')` with options that shrink each variant.
 */
export function describeConformance(options: DescribeConformanceOptions): void {
  if (options.models.length === 0) throw new Error('describeConformance: no models given (is the package registering its variants?)');
  describe('conformance', () => {
    beforeAll(async () => {
      if (options.backend) {
        await tf.setBackend(options.backend);
        await tf.ready();
      } else {
        await setTestBackend();
      }
    });
    for (const subject of registeredSubjects(options)) {
      it(subject.name, async () => {
        // Long synchronous suites starve vitest's worker RPC ("Timeout calling onTaskUpdate"): yield first.
        await new Promise<void>((r) => setTimeout(r, 0));
        expect(() => runConformance(subject)).not.toThrow();
      });
    }
    it('every model refuses an option its architecture does not take (a typo must not build a default model)', () => {
      for (const name of options.models) {
        expect(() => createModel(name, { ...options.createOptions?.(name), notAnOption: 1 }), name).toThrow(ConfigError);
      }
    });
  });
}
export * from './gpu.js';
export * from './gpu_suite.js';
export * from './backend.js';
export * from './nano.js';
export * from './browser.js';
export * from './leaks.js';
export * from './process.js';
