import { vitTsup } from '../../tsup.shared';

export default vitTsup({ index: 'src/index.ts' });
