import { vitTsup } from '../../tsup.shared';

// platform/node and platform/browser are what package.json's `imports` map `#node-builtins` to.
export default vitTsup({
  index: 'src/index.ts',
  'testing/index': 'src/testing/index.ts',
  'platform/node': 'src/platform/node.ts',
  'platform/browser': 'src/platform/browser.ts',
});
