/**
 * The runtime installed when none is set: onnxruntime-node. Browser bundles replace this module by
 * default-browser.js (package.json "browser" field), which installs none.
 */
import { nodeRuntime } from './node.js';
import type { Runtime } from './types.js';

export const defaultRuntime: Runtime | undefined = nodeRuntime;
