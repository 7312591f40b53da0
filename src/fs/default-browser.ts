/** The platform installed when none is set, in a browser bundle: none (the page calls setPlatform()). */
import type { Platform } from './platform-types.js';

export const defaultPlatform: Platform | undefined = undefined;
