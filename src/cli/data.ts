/**
 * Data as the commands open it: the effective preprocessing is printed once, and a model the user expects to
 * work that scores near chance gets a warning naming the likely causes.
 */
import type { Dataset } from '../data/dataset.js';
import { detectorPreprocess, forEightBit, formatPreprocess, impliesUnitScale, type PreprocessSpec } from '../data/preprocess.js';
import { modelInputs } from '../data/feeds.js';
import { openDataset, parseDataSpec } from '../data/spec.js';
import { detectorShape } from '../metrics/detection-eval.js';
import { isTokenData } from '../data/tokens.js';
import { nearChance } from '../metrics/accuracy.js';
import { evaluate, type EvalReport } from '../metrics/evaluate.js';
import type { Model } from '../ir/graph.js';

const announced = new Set<string>();

/** Whether the data's images are 8-bit (read from its first sample). */
async function eightBit(ds: Dataset): Promise<boolean> {
  if (ds.size === 0) return false;
  const [first] = await ds.source.read([ds.sourceIndex(0)]);
  return first?.kind === 'image' && first.image.data instanceof Uint8Array;
}

/** Prints the preprocessing `ds` applies, once per distinct spec in this process, on stderr. */
export async function announcePreprocess(ds: Dataset): Promise<PreprocessSpec> {
  const u8 = await eightBit(ds);
  const spec = u8 ? forEightBit(ds.preprocess) : ds.preprocess;
  const line = formatPreprocess(spec);
  if (!announced.has(line)) {
    announced.add(line);
    const why = u8 && impliesUnitScale(ds.preprocess)
      ? ' (mean/std in [0,1] units on 8-bit pixels: scaled by 1/255 first, as torchvision\'s ToTensor; --scale 1 keeps raw values)'
      : '';
    process.stderr.write(`preprocessing: ${line}${why}\n`);
  }
  return spec;
}

/**
 * Opens a data set and announces its preprocessing (see announcePreprocess). The data set carries the effective
 * spec (an implied 1/255 made explicit), which is what commands store in the models they write.
 */
export async function openData(spec: string, preprocess: PreprocessSpec, model?: Model): Promise<Dataset> {
  const ds = openDataset(spec, model ? detectorDefaults(spec, preprocess, model) : preprocess);
  if (isTokenData(ds)) {
    // token ids feed the model as they are
    if (Object.keys(preprocess).length && !announced.has(`tokens:${formatPreprocess(preprocess)}`)) {
      announced.add(`tokens:${formatPreprocess(preprocess)}`);
      process.stderr.write(`shears: warning: preprocessing (${formatPreprocess(preprocess)}) does not apply to token data (${spec}): token ids feed the model as they are\n`);
    }
    return ds;
  }
  return ds.withPreprocess(await announcePreprocess(ds));
}

/**
 * The preprocessing for `model` on the data `spec` names: for a detector (an output shaped like a YOLO head or
 * an end-to-end [N, K, 6], one [N, 3, H, W] input) on image data (yolo:, coco:, image folders, IDX), Ultralytics'
 * letterbox to H x W, scale 1/255 and rgb where `preprocess` (stored and given) leaves them open; else as given.
 */
export function detectorDefaults(spec: string, preprocess: PreprocessSpec, model: Model): PreprocessSpec {
  if (!detectorShape(model)) return preprocess;
  let kind: string;
  try {
    kind = parseDataSpec(spec).kind;
  } catch {
    return preprocess; // opening reports the spec's problem
  }
  if (!['yolo', 'coco', 'folder', 'idx'].includes(kind)) return preprocess;
  const ins = modelInputs(model);
  if (ins.length !== 1) return preprocess;
  return detectorPreprocess(preprocess, ins[0]!.type?.shape) ?? preprocess;
}

/**
 * Warns when a model that should work (a dense original, a model being evaluated) scores near chance on
 * labelled data: the preprocessing is then the likely problem, not the model.
 */
export function warnIfNearChance(report: EvalReport, what: string, opts: { mayBeUntrained?: boolean } = {}): void {
  const acc = report.accuracy;
  if (!acc || !nearChance(acc)) return;
  process.stderr.write(
    `shears: warning: ${what} scores ${(100 * acc.top1).toFixed(2)}% top-1 on ${acc.samples} samples, near chance for ${acc.classes} classes. ` +
      `${opts.mayBeUntrained ? 'Unless it is freshly pruned or untrained, the' : 'The'} inputs are probably not what it was trained on: ` +
      'check the normalisation (--scale/--mean/--std, see the \'preprocessing:\' line), the channel order and count (--color) and the layout (--layout nchw|nhwc)\n',
  );
}

/**
 * Scores `model` on up to 500 labelled samples of `ds` and warns when it is near chance (see warnIfNearChance).
 * Only a quick look before long work: a model the data does not fit is reported by that work itself.
 */
export async function checkNotNearChance(model: Model, ds: Dataset, what: string, opts: { mayBeUntrained?: boolean } = {}): Promise<void> {
  if (!ds.hasLabels) return;
  let report: EvalReport;
  try {
    report = await evaluate(model, ds, { limit: 500, batchSize: 100 });
  } catch {
    return;
  }
  warnIfNearChance(report, what, opts);
}
