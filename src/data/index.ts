/** Data sets: IDX, image folders, npy/npz; preprocessing. */
export type { Batch, BatchOptions, RawImage, RawSample, Source } from './types.js';
export { Dataset } from './dataset.js';
export { openDataset, openSource, parseDataSpec, type ParsedSpec, type DataKind } from './spec.js';
export { idxSource, parseIdx, readIdx, findIdxLabels } from './idx.js';
export { npySource, npzSource, parseNpy, parseNpyHeader, readNpz } from './npy.js';
export { TokenDataset, bindTokens, checkVocabulary, isTokenData, openTokens, readTokenFile, vocabularyOf, type TokenStream } from './tokens.js';
export { folderSource } from './folder.js';
export { decodeImage } from './image.js';
export {
  PREPROCESS_KEY, fitToInput, mergePreprocess, normalises, outputShape, preprocessFor, preprocessFromFlags, preprocessFromJSON,
  preprocessImage, preprocessToJSON, readPreprocess, resizeBilinear, validatePreprocess, writePreprocess,
  type PreprocessFlags, type PreprocessSpec,
} from './preprocess.js';
