import { vitConfig } from '../../vitest.shared';

export default vitConfig();
