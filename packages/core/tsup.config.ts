import { vitTsup } from '../../tsup.shared';

export default vitTsup({ index: 'src/index.ts', 'testing/index': 'src/testing/index.ts' });
