/** The runtime installed when none is set, in a browser bundle: none (the page calls setRuntime(webRuntime)). */
import type { Runtime } from './types.js';

export const defaultRuntime: Runtime | undefined = undefined;
