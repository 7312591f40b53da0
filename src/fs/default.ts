/**
 * The platform installed when none is set: Node's. Browser bundles replace this module by default-browser.js
 * (package.json "browser" field), which installs none.
 */
import { nodePlatform } from './node.js';
import type { Platform } from './platform-types.js';

export const defaultPlatform: Platform | undefined = nodePlatform;
