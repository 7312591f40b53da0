/**
 * Opening data in the page as the CLI opens it (src/cli/data.ts openData: detector defaults, an implied 1/255
 * made explicit for 8-bit images), but telling the preprocessing line to the page instead of writing it on
 * stderr (there is no `process` in a browser).
 */
import { detectorDefaults } from '../src/cli/data.js';
import type { Dataset } from '../src/data/dataset.js';
import { forEightBit, formatPreprocess, type PreprocessSpec } from '../src/data/preprocess.js';
import { openDataset } from '../src/data/spec.js';
import { isTokenData } from '../src/data/tokens.js';
import type { Model } from '../src/ir/graph.js';
import type { OpenData } from '../src/pipeline/context.js';

export function pageOpenData(say: (line: string) => void): OpenData {
  const said = new Set<string>();
  return async (spec: string, preprocess: PreprocessSpec, model?: Model): Promise<Dataset> => {
    const ds = openDataset(spec, model ? detectorDefaults(spec, preprocess, model) : preprocess);
    if (isTokenData(ds)) return ds;
    let u8 = false;
    if (ds.size > 0) {
      const [first] = await ds.source.read([ds.sourceIndex(0)]);
      u8 = first?.kind === 'image' && first.image.data instanceof Uint8Array;
    }
    const eff = u8 ? forEightBit(ds.preprocess) : ds.preprocess;
    const line = `preprocessing: ${formatPreprocess(eff)}`;
    if (!said.has(line)) {
      said.add(line);
      say(line);
    }
    return ds.withPreprocess(eff);
  };
}
