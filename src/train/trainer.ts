/**
 * Fine-tuning (and training) inside onnxruntime: the training graph (autodiff/training.ts) runs forward,
 * loss and backward in one InferenceSession call per step; the optimizer updates Float32Array weights in JS and
 * feeds them back. Pruning masks stay enforced (pruned weights are zeroed after every update); BatchNorm can be
 * re-inserted for training and is folded back into the convs on export.
 */
import { ShearsError } from '../errors.js';
import { modelInputs } from '../data/feeds.js';
import { DataType } from '../ir/dtype.js';
import type { Model } from '../ir/graph.js';
import { floatView, numel, type Tensor } from '../ir/tensor.js';
import { buildTrainingGraph } from '../autodiff/training.js';
import { cloneModel } from '../ir/clone.js';
import { TARGET, TEACHER } from '../autodiff/losses.js';
import { probeTypes } from '../autodiff/shapes.js';
import { lowerNchwc } from '../autodiff/nchwc.js';
import { createSession, type Runner } from '../runtime/session.js';
import { createStepRunner, defaultReplicas, stepGraphOf } from './step-runner.js';
import { availableParallelism } from '../fs/platform.js';
import { getMasks } from '../sparsity/masks.js';
import { Dataset } from '../data/dataset.js';
import { mixedSeedRng, permutation } from '../random.js';
import type { EpochStats } from './epoch-stats.js';
import { CKPT_KEY, checkMidEpoch, countingRng, loadCheckpoint, saveCheckpoint, TrainingStopped, type EpochSoFar } from './checkpoint.js';
import { fillBatch, fillTargets, type ArrayData, type AugmentSpec } from '../data/in-memory.js';
import { argmaxCorrect, softmaxRows } from './logits.js';
import { SampleStore, toStore } from './store.js';
import { TEACHER_TABLE_MAX, teacherTableFor } from './teacher.js';
import { createOptimizer, clipGradNorm, type OptimizerSpec, type ParamState } from './optim.js';
import { scheduleAt, type ScheduleSpec } from './schedule.js';
import { decomposeBatchNormForTraining, foldBatchNorm, insertBatchNorm } from './bn.js';
import { reinitialize } from './init.js';
import { relMse } from '../metrics/relative-mse.js';
import { rebatchIfPossible, withStaticBatch } from '../analysis/rebatch.js';
import { findYoloHead, type YoloHead } from './yolo-head.js';
import { detectionTargets, targetChannels, type DetectionData } from './tal.js';
import type { DetectDistillSpec } from '../autodiff/detect-distill.js';

export interface FinetuneOptions {
  /**
   * Samples in memory, or a Dataset: loaded into memory when its samples take at most `maxInMemory` floats,
   * else read, decoded and preprocessed batch by batch.
   */
  train: ArrayData | Dataset | SampleStore;
  val?: ArrayData | Dataset | SampleStore;
  /** Floats of samples a Dataset may hold in memory (default IN_MEMORY_MAX = 256 Mi, 1 GiB). */
  maxInMemory?: number;
  epochs: number;
  /** Batch size (default 128). */
  batch?: number;
  /**
   * Initializers that are not weights and must not be trained: inputs of a multi-input model pinned to their fed
   * value for training (train/pin-feeds.ts).
   */
  frozen?: readonly string[];
  /** Base learning rate (peak for one-cycle; default 0.01). */
  lr?: number;
  /** Default cosine to 0 over the run. */
  schedule?: ScheduleSpec;
  /** Default SGD momentum 0.9, Nesterov, weight decay 5e-4. */
  optimizer?: OptimizerSpec;
  /** Unpruned teacher: adds knowledge distillation against its outputs. */
  teacher?: Model;
  /**
   * 'classify': cross-entropy on labels (plus distillation with a teacher); needs labels and an output
   * [N, classes]. 'match-teacher': mean squared error against the teacher's outputs, for any output (detector
   * heads, embeddings, regression) and unlabelled data. Default: 'classify' when the output and the data allow
   * it, else 'match-teacher' (which needs `teacher`).
   */
  objective?: 'classify' | 'match-teacher' | 'detect';
  /**
   * 'detect': YOLOv8's detection loss (task-aligned assignment, BCE classes, CIoU + DFL boxes) on the model's
   * pre-decode YOLO head, against these boxes (train/tal.ts).
   */
  detection?: DetectionData;
  /**
   * match-teacher: the value compared, by name, in both models (a graph output or an intermediate tensor, such
   * as a detector head before its box decoding); default the first output. Implies match-teacher.
   */
  matchOutput?: string;
  /**
   * match-teacher on a YOLO detector's head: the model's `value` (its pre-decode head [N, 4 x regMax + nc, A], the
   * shape of the matched value) is trained against the teacher's matched value (its box-bin and class
   * probabilities: pipeline/detector.ts withDistillTarget) by autodiff/detect-distill.ts (cross-entropy of the
   * bins, BCE of the classes) instead of the squared error. Validation still compares the matched values of both
   * models by relative squared error. Needs `matchOutput`.
   */
  detectDistill?: { value: string } & DetectDistillSpec;
  /** Distillation temperature (default 4) and weight of the KD term (default 0.5; CE gets 1 - weight). */
  kdTemperature?: number;
  kdWeight?: number;
  labelSmoothing?: number;
  augment?: AugmentSpec;
  /** Masks to keep enforced; default the masks stored in the model (sparsity/masks.ts); false: none. */
  masks?: ReadonlyMap<string, Uint8Array> | false;
  /** Clip the global gradient norm. */
  clipNorm?: number;
  seed?: number;
  /** Intra-op threads (default: all cores onnxruntime sees). */
  threads?: number;
  /**
   * 'none' (default): train the model as it is. 'reinsert': BatchNorm after every conv, initialised to the
   * identity from data statistics, folded back at the end. 'fresh': BN with scale 1, bias 0 (from scratch).
   */
  batchNorm?: 'none' | 'reinsert' | 'fresh';
  /**
   * With batchNorm 'reinsert': the unpruned model whose conv-output statistics the new BNs restore (default: the
   * teacher, if any). See insertBatchNorm.
   */
  bnReference?: Model;
  /** Re-initialise all weights (training from scratch). */
  reinit?: boolean;
  /** Progress on stderr (default true), or a callback. */
  progress?: boolean | ((p: Progress) => void);
  /**
   * Write a checkpoint (ONNX, with optimizer state and the run's position) atomically after every epoch and when
   * stopped by `signal`. May be the `resume` file.
   */
  checkpoint?: string;
  /** Resume from a checkpoint written by `checkpoint`: at the epoch boundary or mid-epoch step it was written at. */
  resume?: string;
  /**
   * Stop request: checked before every step (and after the last); when aborted, finetune writes the checkpoint
   * (with `checkpoint`) and rejects with TrainingStopped (train/checkpoint.ts).
   */
  signal?: AbortSignal;
  /** Where a stop by `signal` writes its checkpoint when `checkpoint` is not given (e.g. beside the output). */
  checkpointOnStop?: string;
  /** Stop each epoch after this many steps (benchmarks, smoke tests). */
  maxStepsPerEpoch?: number;
  /** Weight decay on every parameter (PyTorch's default with model.parameters()) or only rank >= 2 (default true). */
  decayAll?: boolean;
  /** Evaluation batch size (default 500). */
  evalBatch?: number;
  /** Stop after this many epochs of the `epochs`-long schedule (with `checkpoint`: to resume later). */
  stopAfterEpochs?: number;
  /** Let onnxruntime's idle threads spin-wait (default false: kinder to shared machines; see SessionConfig.spin). */
  spin?: boolean;
  /**
   * Data-parallel replicas (worker threads with one session each, splitting the batch; train/step-runner.ts).
   * Default: defaultReplicas(batch, threads). 1 runs the step in this thread. With BatchNorm in training mode each
   * replica normalises its slice with its own statistics.
   */
  replicas?: number;
  /**
   * Micro-batches per replica per step, run one after the other with their gradients averaged (gradient
   * accumulation, default 1): the same step in less memory, or a batch larger than a fixed-batch model takes.
   */
  accumulate?: number;
  /**
   * Run the Convs of the training and evaluation graphs on onnxruntime's NCHWc kernels where this CPU has them
   * (default true; autodiff/nchwc.ts): same results up to float rounding, about 1.4x faster steps on ResNet-20.
   */
  nchwc?: boolean;
}

export interface Progress {
  epoch: number;
  epochs: number;
  step: number;
  steps: number;
  loss: number;
  /** Training accuracy so far (classification only). */
  acc?: number;
  imagesPerSec: number;
  etaSec: number;
  lr: number;
}

export interface FinetuneResult {
  model: Model;
  history: EpochStats[];
  seconds: number;
  /** Accuracy of the starting model on val (when val is given). */
  initialValAcc?: number;
  /** match-teacher: valRelMse of the starting model. */
  initialValRelMse?: number;
  /**
   * The static batch of the model's input when it trained on a rebatched copy (one run per micro-batch, checked
   * equal to per-sample runs); the returned model declares that batch again.
   */
  rebatched?: number;
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

/** Fine-tunes (or trains) a model; returns a new model (the input is not modified). */
/**
 * Fine-tuning feeds one input: a multi-input or stateful model (a sample rate, a recurrent state) is refused with
 * its inputs listed, before any work (onnxruntime would otherwise fail on the missing inputs).
 */
export function refuseMultiInput(model: Model): void {
  const ins = modelInputs(model);
  if (ins.length <= 1) return;
  throw new ShearsError(
    `fine-tuning feeds one input, and the model has ${ins.length}: ${ins.map((i) => `${i.name} [${(i.type?.shape ?? ['?']).join(', ')}]`).join(', ')}. ` +
      'Give every other input a constant feed (--feed NAME=const:V or --feed NAME=zeros): fine-tuning pins it to that value while it trains',
  );
}

export async function finetune(model: Model, opts: FinetuneOptions): Promise<FinetuneResult> {
  refuseMultiInput(model);
  const t0 = performance.now();
  const B = opts.batch ?? 128;
  // Unlabelled data is enough to match a teacher.
  const detect = opts.objective === 'detect';
  if (detect && !opts.detection) throw new ShearsError('the detect objective needs the boxes of the training images (FinetuneOptions.detection)');
  if (detect && opts.matchOutput !== undefined) throw new ShearsError('--match-output goes with the match-teacher objective, not detect');
  const labelsNeeded = opts.teacher || detect ? 'optional' : 'required';
  const train = await toStore(opts.train, labelsNeeded, opts.maxInMemory);
  // The detect objective scores no validation data while training (its mAP comes from `shears eval --task detect`).
  const val = opts.val && !detect ? await toStore(opts.val, labelsNeeded, opts.maxInMemory) : undefined;
  if (train.n < B) throw new ShearsError(`the training set has ${train.n} samples, fewer than one batch of ${B}`);
  const resumed = opts.resume !== undefined ? loadCheckpoint(opts.resume) : undefined;
  const resumeModel = resumed?.model;
  const ckptInfo = resumed?.info;
  if (ckptInfo) checkMidEpoch(ckptInfo, { seed: opts.seed, batch: B, samples: train.n });
  const seed = opts.seed ?? ckptInfo?.seed ?? 0;
  // Augmentation's random numbers, continued where the checkpoint left them.
  const rand = countingRng(seed + 1, ckptInfo?.draws ?? 0);
  const bnMode = ckptInfo ? (ckptInfo.bn as FinetuneOptions['batchNorm']) : opts.batchNorm ?? 'none';

  let work = cloneModel(resumeModel ?? model);
  const inputName = work.graph.inputs.find((i) => !work.graph.initializers.has(i.name))?.name;
  if (!inputName) throw new ShearsError('the model has no data input');
  // A model exported with a static batch (Ultralytics exports fix it at 1) trains on a rebatched copy when the
  // batched runs check equal to per-sample runs: one run per micro-batch instead of one per sample (fmnist_det,
  // batch 16: 48 images/s against 16). The written model gets its static batch back. The teacher and the
  // BatchNorm reference are rebatched the same way (used here only). Otherwise: accumulation, as below.
  const userBatch = fixedBatch(model, inputName);
  let rebatched = false;
  if (opts.accumulate === undefined) {
    const keep = [...(opts.matchOutput !== undefined ? [opts.matchOutput] : []), ...(opts.detectDistill ? [opts.detectDistill.value] : [])];
    if (fixedBatch(work, inputName) !== undefined) {
      const r = await rebatchIfPossible(work, keep);
      if (r) {
        work = r;
        rebatched = true;
      }
    }
    // The teacher is often the BatchNorm reference too (the dense model): rebatched once.
    const done = new Map<Model, Model | undefined>();
    for (const k of ['teacher', 'bnReference'] as const) {
      const m = opts[k];
      const input = m?.graph.inputs.find((i) => !m.graph.initializers.has(i.name))?.name;
      if (!m || !input || fixedBatch(m, input) === undefined) continue;
      if (!done.has(m)) done.set(m, await rebatchIfPossible(m, keep));
      const r = done.get(m);
      if (r) opts = { ...opts, [k]: r };
    }
  }
  const inShape = [B, ...train.sampleDims];
  const replicas = opts.replicas ?? defaultReplicas(B, opts.threads ?? availableParallelism());
  if (!Number.isInteger(replicas) || replicas < 1 || B % replicas !== 0) throw new ShearsError(`--replicas ${replicas} must be a positive integer dividing the batch of ${B}`);
  // The training graph sees one micro-batch of one replica's slice of the batch. A model whose input has a fixed
  // batch size (exports with a static batch of 1) gets it by accumulation when --accumulate is not given.
  const fixed = fixedBatch(work, inputName);
  let accumulate = opts.accumulate ?? 1;
  if (fixed !== undefined && B / replicas / accumulate !== fixed) {
    if (opts.accumulate === undefined && (B / replicas) % fixed === 0) accumulate = B / replicas / fixed;
    else throw new ShearsError(`the model's input '${inputName}' has a fixed batch of ${fixed}: give --batch, --replicas and --accumulate so that batch / (replicas x accumulate) = ${fixed}, or make the batch dynamic with \`shears rebatch\``);
  }
  if (!Number.isInteger(accumulate) || accumulate < 1 || (B / replicas) % accumulate !== 0) throw new ShearsError(`--accumulate ${accumulate} must be a positive integer dividing the batch of ${B} / ${replicas} replica(s)`);
  const micro = B / replicas / accumulate;
  const stepShape = [micro, ...train.sampleDims];
  const masks = opts.masks === false ? new Map<string, Uint8Array>() : opts.masks ?? getMasks(work);

  if (!resumeModel && bnMode !== 'none') {
    if (fixed !== undefined && fixed < B) throw new ShearsError(`--bn ${bnMode} needs batch statistics, but the model's input '${inputName}' has a fixed batch of ${fixed}: make the batch dynamic first (\`shears rebatch\`)`);
    const calib = bnMode === 'reinsert' ? { [inputName]: floatView(inShape, (await train.take(range(B))).x) } : undefined;
    const reference = opts.bnReference ?? opts.teacher;
    // A YOLO detector's last head convs and its DFL decode had no BatchNorm (Ultralytics' Detect): none is
    // inserted there, whatever the objective (a model without such a head: every conv, as before).
    const skip = await yoloPlainConvs(work, inputName, stepShape, detect);
    work = await insertBatchNorm(work, calib, { ...(reference ? { reference } : {}), ...(skip ? { skip } : {}) });
  }
  if (!resumeModel && opts.reinit) {
    const names = [...work.graph.initializers.entries()].filter(([k, t]) => t.dtype === DataType.FLOAT && numel(t.dims) > 1 && !opts.frozen?.includes(k)).map(([k]) => k);
    reinitialize(work, names, mixedSeedRng(seed + 7));
  }

  // Training graph (reading `matchOutput` instead of the model's outputs when given).
  const trainModel = cloneModel(work);
  const matched = opts.matchOutput;
  if (matched !== undefined) {
    const has = (m: Model) => m.graph.nodes.some((n) => n.outputs.includes(matched)) || m.graph.outputs.some((o) => o.name === matched);
    if (!has(work)) throw new ShearsError(`--match-output '${matched}' is not a value of the model`);
    if (opts.teacher && !has(opts.teacher)) throw new ShearsError(`--match-output '${matched}' is not a value of the teacher`);
    if (opts.objective === 'classify') throw new ShearsError('--match-output goes with the match-teacher objective');
    trainModel.graph.outputs = [{ name: matched }];
  }
  if (opts.detectDistill) {
    const v = opts.detectDistill.value;
    if (matched === undefined) throw new ShearsError('detector distillation compares with the teacher\'s matched value: give matchOutput');
    if (!work.graph.nodes.some((n) => n.outputs.includes(v))) throw new ShearsError(`detector distillation: '${v}' is not a value of the model`);
    trainModel.graph.outputs = [{ name: v }];
  }
  const pre = await probeTypes(trainModel, { [inputName]: stepShape });
  // detect: the loss reads the pre-decode head, found by structure.
  const head: YoloHead | undefined = detect ? findYoloHead(trainModel, pre.shapes, stepShape) : undefined;
  if (head) trainModel.graph.outputs = [{ name: head.value }];
  const outName = trainModel.graph.outputs[0]!.name;
  const outShape = pre.shapes.get(outName)!;
  const objective = opts.objective ?? (matched === undefined && outShape.length === 2 && train.labels && (!val || val.labels) ? 'classify' : 'match-teacher');
  if (detect) {
    // no teacher needed
  } else if (objective === 'classify') {
    if (outShape.length !== 2) throw new ShearsError(`classification needs an output [N, classes]; '${outName}' is ${outShape.join('x')}: give a teacher (--teacher ORIGINAL.onnx) to train by matching its outputs`);
    if (!train.labels || (val && !val.labels)) throw new ShearsError('classification needs labelled data: give labels, or a teacher (--teacher ORIGINAL.onnx) to train by matching its outputs');
  } else if (!opts.teacher) {
    throw new ShearsError(`'${outName}' (${outShape.join('x')}) is not a classifier output with labelled data: give a teacher (--teacher ORIGINAL.onnx) to train by matching its outputs`);
  }
  const classify = objective === 'classify';
  // Values per sample of the output, the target and the teacher's probabilities.
  const classes = classify ? outShape[1]! : head ? targetChannels(head) * head.anchors : numel(outShape.slice(1));
  const state = decomposeBatchNormForTraining(trainModel, pre.shapes);
  const T = opts.kdTemperature ?? 4;
  const kdW = opts.teacher ? opts.kdWeight ?? 0.5 : 0;
  const dd = opts.detectDistill;
  if (dd && (classify || detect)) throw new ShearsError('detector distillation goes with the match-teacher objective');
  if (dd && (outShape.length !== 3 || outShape[1] !== 4 * dd.regMax + dd.nc)) throw new ShearsError(`detector distillation: '${outName}' is ${outShape.join('x')}, not [N, ${4 * dd.regMax + dd.nc}, anchors]`);
  const loss = head ? { detect: { regMax: head.regMax, nc: head.nc, points: head.points, ...opts.detection!.gains } } : dd ? { detectDistill: { regMax: dd.regMax, nc: dd.nc, ...(dd.confidence !== undefined ? { confidence: dd.confidence } : {}), ...(dd.box !== undefined ? { box: dd.box } : {}), ...(dd.cls !== undefined ? { cls: dd.cls } : {}) } } : !classify ? { mse: {} } : opts.teacher ? { ce: { weight: 1 - kdW }, kd: { weight: kdW, temperature: T } } : { ce: {} };
  const tg = await buildTrainingGraph(trainModel, { batch: micro, loss, state, inputShapes: { [inputName]: stepShape }, ...(opts.frozen ? { frozen: opts.frozen } : {}) });
  const threads = opts.threads;
  const sessCfg = { spin: opts.spin ?? false, ...(threads ? { threads } : {}) };
  const useNchwc = opts.nchwc ?? true;
  const teacherInput = opts.teacher?.graph.inputs.find((i) => !opts.teacher!.graph.initializers.has(i.name))?.name;
  // The teacher as the targets come from it: only the matched value as its output.
  const teacherModel = opts.teacher && matched !== undefined ? { ...opts.teacher, graph: { ...opts.teacher.graph, outputs: [{ name: matched }] } } : opts.teacher;
  // Without augmentation the teacher sees each sample unchanged in every epoch: its probabilities are computed
  // once, before training (one batched forward pass over the training set), instead of in every step.
  const augmented = !!opts.augment && ((opts.augment.cropPad ?? 0) > 0 || !!opts.augment.flip);
  if (detect && augmented) throw new ShearsError('--augment moves the image but not its boxes: the detect objective trains without it');
  // (match-teacher: the teacher's outputs as they are, fed as the MSE target.)
  const teacherKind = classify ? 'softmax' as const : 'raw' as const;
  const teacherTable = opts.teacher && !detect && !augmented && train.n * classes <= TEACHER_TABLE_MAX
    ? await teacherTableFor(teacherModel!, teacherInput ?? inputName, train, classes, classify ? T : undefined, sessCfg, fixedBatch(opts.teacher, teacherInput ?? inputName) ?? opts.evalBatch ?? 500)
    : undefined;
  const teacher = opts.teacher && !detect
    ? { probs: classify ? TEACHER : TARGET, temperature: T, kind: teacherKind, ...(teacherTable ? {} : { model: teacherModel!, input: teacherInput ?? inputName }) }
    : undefined;
  const runner = await createStepRunner(stepGraphOf(tg, useNchwc ? (await lowerNchwc(tg.model)).model : tg.model, { input: inputName, sampleDims: train.sampleDims, classes, ...(classify ? {} : { targetDims: head ? [targetChannels(head), head.anchors] : outShape.slice(1) }), ...(head ? { outputWidth: numel(outShape.slice(1)) } : {}) }, teacher), {
    batch: B, replicas, accumulate, spin: opts.spin ?? false, ...(threads ? { threads } : {}),
  });
  let evalRunner: Runner | undefined;
  let evalTeacherRunner: Runner | undefined;
  try {
    // Evaluation graph: the inference model with the trained values as inputs (one session for the whole run).
    const evalModel = cloneModel(work);
    if (matched !== undefined) evalModel.graph.outputs = [{ name: matched }];
    if (head) evalModel.graph.outputs = [{ name: head.value }];
    // What evaluation reads: the trained value, or with detectDistill the matched one (compared by squared error).
    const evalOut = dd ? matched! : outName;
    const fed = [...tg.params.map((p) => p.name), ...tg.state.map((s) => s.input)];
    for (const k of fed) {
      const t = evalModel.graph.initializers.get(k)!;
      evalModel.graph.initializers.delete(k);
      evalModel.graph.inputs.push({ name: k, type: { elemType: t.dtype, shape: t.dims } });
    }
    const evalSession = await createSession(useNchwc ? (await lowerNchwc(evalModel)).model : evalModel, sessCfg);
    evalRunner = evalSession;

    // Parameters and state as Float32Arrays (the step runner's, fed every step, updated in place).
    const params: ParamState[] = tg.params.map((p, k) => {
      const value = runner.params[k]!;
      value.set(p.init.data as Float32Array);
      const mask = masks.get(p.name);
      if (mask) for (let i = 0; i < value.length; i++) if (!mask[i]) value[i] = 0;
      return { name: p.name, value, decay: (opts.decayAll ?? true) || p.dims.length >= 2, ...(mask ? { mask } : {}) };
    });
    const stateVals = runner.state;
    tg.state.forEach((s, k) => stateVals[k]!.set(s.init.data as Float32Array));
    const optSpec: OptimizerSpec = opts.optimizer ?? { kind: 'sgd', momentum: 0.9, nesterov: true, weightDecay: 5e-4 };
    const optim = createOptimizer(optSpec, params);
    if (resumed) optim.load(resumed.optimizer);
    const xBuf = runner.x;
    const tBuf = runner.targets;
    // The preprocessed value of a black pixel, for crop padding: the smallest value in (up to 1 M values of) the data.
    let padValue = Infinity;
    const peek = train.inMemory?.x.subarray(0, 1 << 20) ?? (await train.take(range(Math.min(train.n, 64)))).x;
    for (let i = 0; i < peek.length; i++) padValue = Math.min(padValue, peek[i]!);

    // match-teacher evaluation compares with the teacher's outputs (a model with a fixed batch runs one at a time).
    const evalBatch = fixed ?? opts.evalBatch ?? 500;
    const evalTeacher = !classify && !detect && val ? await createSession(teacherModel!, sessCfg) : undefined;
    evalTeacherRunner = evalTeacher;
    const evaluate = async (data: SampleStore): Promise<{ acc?: number; loss?: number; relMse?: number }> => {
      const eb = evalBatch;
      // Copies: the step runner's arrays may live in shared memory, which onnxruntime-node does not accept.
      const evalFeeds: Record<string, Tensor> = {};
      tg.params.forEach((p, k) => (evalFeeds[p.name] = floatView(p.dims, Float32Array.from(params[k]!.value))));
      tg.state.forEach((s, k) => (evalFeeds[s.input] = floatView(s.init.dims, Float32Array.from(stateVals[k]!))));
      let correct = 0;
      let lossSum = 0;
      let sq = 0;
      let ref = 0;
      // A fixed-batch model sees whole batches only (any remainder is left out).
      const n0 = fixed === undefined ? data.n : Math.floor(data.n / eb) * eb;
      for await (const { start: s, data: chunk } of data.chunks(eb, n0)) {
        const n = chunk.n;
        const x = floatView([n, ...data.sampleDims], chunk.x);
        evalFeeds[inputName] = x;
        const out = (await evalSession.run(evalFeeds, [evalOut]))[evalOut]!.data as Float32Array;
        if (evalTeacher) {
          const t = (await evalTeacher.run({ [teacherInput ?? inputName]: x }))[evalTeacher.outputNames[0]!]!.data as Float32Array;
          for (let i = 0; i < t.length; i++) {
            sq += (out[i]! - t[i]!) ** 2;
            ref += t[i]! ** 2;
          }
          continue;
        }
        const labels = data.labels!;
        const idx = Array.from({ length: n }, (_, i) => s + i);
        correct += argmaxCorrect(out, labels, idx, classes);
        const probs = new Float32Array(n * classes);
        softmaxRows(out, n, classes, 1, probs);
        for (let i = 0; i < n; i++) lossSum -= Math.log(Math.max(probs[i * classes + labels[s + i]!]!, 1e-12));
      }
      return classify ? { acc: correct / n0, loss: lossSum / n0 } : { relMse: relMse(sq, ref) };
    };

    // detect: the task-aligned targets, from the reference's predictions once per image, or from the current
    // weights' every step (train/tal.ts).
    const det = head ? opts.detection! : undefined;
    const K = head ? targetChannels(head) * head.anchors : 0;
    const headWidth = head ? outShape[1]! * head.anchors : 0;
    if (head && det) {
      for (let i = 0; i < train.n; i++)
        for (const b of det.boxes(i)) if (!(Number.isInteger(b.cls) && b.cls >= 0 && b.cls < head.nc)) throw new ShearsError(`training sample ${i} has a box of class ${b.cls}, outside the detector's ${head.nc} classes (0-${head.nc - 1})`);
    }
    const currentFeeds = (): Record<string, Tensor> => {
      const f: Record<string, Tensor> = {};
      tg.params.forEach((p, k) => (f[p.name] = floatView(p.dims, Float32Array.from(params[k]!.value))));
      tg.state.forEach((s, k) => (f[s.input] = floatView(s.init.dims, Float32Array.from(stateVals[k]!))));
      return f;
    };
    /** Head outputs [n, C, A] of `run` on n samples (in runs of the model's fixed batch, if it has one). */
    const headOutputs = async (run: Runner, feeds: Record<string, Tensor>, input: string, out: string, x: Float32Array, n: number, step: number): Promise<Float32Array> => {
      const y = new Float32Array(n * headWidth);
      const per = numel(train.sampleDims);
      for (let s = 0; s < n; s += step) {
        const m = Math.min(step, n - s);
        feeds[input] = floatView([m, ...train.sampleDims], x.slice(s * per, (s + m) * per));
        y.set((await run.run(feeds, [out]))[out]!.data as Float32Array, s * headWidth);
      }
      return y;
    };
    let refTable: Float32Array | undefined;
    if (head && det && (det.assign ?? 'student') === 'reference') {
      let run: Runner = evalSession;
      let input = inputName;
      let out = outName;
      let feeds = currentFeeds();
      let step = evalBatch;
      if (opts.teacher) {
        const tIn = teacherInput ?? inputName;
        const tShape = [fixedBatch(opts.teacher, tIn) ?? 1, ...train.sampleDims];
        const tHead = findYoloHead(opts.teacher, (await probeTypes(opts.teacher, { [tIn]: tShape })).shapes, tShape);
        if (tHead.anchors !== head.anchors || tHead.nc !== head.nc || tHead.regMax !== head.regMax) throw new ShearsError('the teacher\'s detection head differs from the model\'s (anchors, classes or bins)');
        run = await createSession({ ...opts.teacher, graph: { ...opts.teacher.graph, outputs: [{ name: tHead.value }] } }, sessCfg);
        input = tIn;
        out = tHead.value;
        feeds = {};
        step = fixedBatch(opts.teacher, tIn) ?? evalBatch;
      }
      try {
        refTable = new Float32Array(train.n * K);
        for await (const { start: s, data: chunk } of train.chunks(evalBatch)) {
          const y = await headOutputs(run, feeds, input, out, chunk.x, chunk.n, step);
          for (let k = 0; k < chunk.n; k++) detectionTargets(y.subarray(k * headWidth, (k + 1) * headWidth), det.boxes(s + k), head, refTable, (s + k) * K, det.tal);
        }
      } finally {
        if (run !== evalSession) await run.release();
      }
    }
    const fillDetectionTargets = async (idx: ArrayLike<number>): Promise<void> => {
      if (!head || !det) return;
      if (refTable) {
        for (let k = 0; k < B; k++) tBuf.set(refTable.subarray(idx[k]! * K, (idx[k]! + 1) * K), k * K);
        return;
      }
      const y = await headOutputs(evalSession, currentFeeds(), inputName, outName, xBuf, B, evalBatch);
      for (let k = 0; k < B; k++) detectionTargets(y.subarray(k * headWidth, (k + 1) * headWidth), det.boxes(idx[k]!), head, tBuf, k * K, det.tal);
    };

    const history: EpochStats[] = ckptInfo?.history ? [...ckptInfo.history] : [];
    const startEpoch = ckptInfo ? ckptInfo.epoch : 0;
    const startStep = ckptInfo?.step ?? 0;
    // The starting model's scores: measured once, carried by the checkpoints.
    const initial = ckptInfo ? { acc: ckptInfo.initialValAcc, relMse: ckptInfo.initialValRelMse } : val ? await evaluate(val) : undefined;
    const stepsPerEpoch = Math.min(Math.floor(train.n / B), opts.maxStepsPerEpoch ?? Infinity);
    const totalSteps = stepsPerEpoch * opts.epochs;
    const baseLr = opts.lr ?? 0.01;
    const sched = opts.schedule ?? { kind: 'cosine' };
    const report = typeof opts.progress === 'function' ? opts.progress : opts.progress === false ? undefined : stderrProgress();

    // Checkpoint at `epoch` whole epochs and `step` steps of the next (with that epoch's statistics so far).
    const save = (path: string | undefined, epoch: number, step: number, partial?: EpochSoFar) => {
      if (path === undefined) return;
      const ck = withValues(work, tg.params.map((p) => p.name), params.map((p) => p.value), tg.state.map((s) => s.input), stateVals);
      saveCheckpoint(path, ck, {
        epoch, step, bn: bnMode ?? 'none', history, seed, batch: B, samples: train.n, draws: rand.draws,
        ...(partial ? { partial } : {}),
        ...(initial?.acc !== undefined ? { initialValAcc: initial.acc } : {}),
        ...(initial?.relMse !== undefined ? { initialValRelMse: initial.relMse } : {}),
      }, optim.state());
    };
    const stopIfAsked = (epoch: number, step: number, partial?: EpochSoFar) => {
      if (!opts.signal?.aborted) return;
      const path = opts.checkpoint ?? opts.checkpointOnStop;
      save(path, epoch, step, partial);
      throw new TrainingStopped(epoch, step, path);
    };

    const endEpoch = Math.min(opts.epochs, opts.stopAfterEpochs ?? opts.epochs);
    for (let epoch = startEpoch; epoch < endEpoch; epoch++) {
      const order = permutation(train.n, seed * 1000 + epoch);
      const first = epoch === startEpoch ? startStep : 0;
      const sofar = epoch === startEpoch && startStep > 0 ? ckptInfo?.partial : undefined;
      const te = performance.now() - (sofar?.seconds ?? 0) * 1000;
      let lossSum = sofar?.lossSum ?? 0;
      let correct = sofar?.correct ?? 0;
      let seen = sofar?.seen ?? 0;
      let lr = baseLr;
      const rssMiB: number[] = [...(sofar?.rssMiB ?? [])];
      for (let step = first; step < stepsPerEpoch; step++) {
        stopIfAsked(epoch, step, { lossSum, correct, seen, seconds: (performance.now() - te) / 1000, rssMiB });
        if (step % 50 === 49) rssMiB.push(Math.round(process.memoryUsage().rss / 2 ** 20));
        const idx = order.subarray(step * B, (step + 1) * B);
        if (train.inMemory) fillBatch(train.inMemory, idx, xBuf, opts.augment, rand.next, padValue);
        else fillBatch(await train.take(idx), range(B), xBuf, opts.augment, rand.next, padValue);
        if (classify) fillTargets(train.labels!, idx, tBuf, classes, opts.labelSmoothing ?? 0);
        if (head) await fillDetectionTargets(idx);
        if (teacherTable) for (let k = 0; k < B; k++) runner.teacherProbs!.set(teacherTable.subarray(idx[k]! * classes, (idx[k]! + 1) * classes), k * classes);
        const res = await runner.step();
        const lossV = res.loss;
        if (!Number.isFinite(lossV)) throw new ShearsError(`training diverged at epoch ${epoch + 1} step ${step + 1} (loss ${lossV}): lower the learning rate, or re-insert BatchNorm (--bn reinsert) where the exporter folded it into the convs`);
        lossSum += lossV * B;
        if (classify) correct += argmaxCorrect(res.output, train.labels!, idx, classes);
        seen += B;
        const grads = res.grads;
        if (opts.clipNorm) clipGradNorm(grads, opts.clipNorm);
        const t = epoch * stepsPerEpoch + step;
        const sv = scheduleAt(sched, baseLr, t, totalSteps);
        lr = sv.lr;
        optim.step(grads, sv.lr, sv.momentum);
        res.state.forEach((v, k) => stateVals[k]!.set(v));
        if (report && (step % 10 === 9 || step === stepsPerEpoch - 1)) {
          const el = (performance.now() - te) / 1000;
          const ips = seen / el;
          const left = (stepsPerEpoch - step - 1) * B + (opts.epochs - epoch - 1) * stepsPerEpoch * B;
          report({ epoch: epoch + 1, epochs: opts.epochs, step: step + 1, steps: stepsPerEpoch, loss: lossSum / seen, ...(classify ? { acc: correct / seen } : {}), imagesPerSec: ips, etaSec: left / ips, lr });
        }
      }
      const secs = (performance.now() - te) / 1000;
      const ev = val ? await evaluate(val) : undefined;
      const stats: EpochStats = { epoch: epoch + 1, trainLoss: lossSum / seen, ...(classify ? { trainAcc: correct / seen } : {}), seconds: secs, imagesPerSec: seen / secs, lr, rssMiB };
      if (ev?.acc !== undefined) stats.valAcc = ev.acc;
      if (ev?.loss !== undefined) stats.valLoss = ev.loss;
      if (ev?.relMse !== undefined) stats.valRelMse = ev.relMse;
      history.push(stats);
      if (report && opts.progress !== false && typeof opts.progress !== 'function') {
        const acc = stats.trainAcc !== undefined ? ` train acc ${(stats.trainAcc * 100).toFixed(2)}%` : '';
        const v = ev?.acc !== undefined ? ` val acc ${(ev.acc * 100).toFixed(2)}%` : ev?.relMse !== undefined ? ` val relMSE vs teacher ${ev.relMse.toExponential(3)}` : '';
        process.stderr.write(`\repoch ${epoch + 1}/${opts.epochs}: loss ${stats.trainLoss.toFixed(4)}${acc}${v} ${stats.imagesPerSec.toFixed(0)} img/s ${secs.toFixed(1)} s\x1b[K\n`);
      }
      try {
        save(opts.checkpoint, epoch + 1, 0);
      } catch (e) {
        // A checkpoint is a safety net: one that cannot be written (a full disk) must not end the training it protects.
        if (!(e instanceof ShearsError)) throw e;
        process.stderr.write(`shears: warning: ${e.message}; training goes on without this checkpoint\n`);
      }
    }
    stopIfAsked(endEpoch, 0);

    const trained = withValues(work, tg.params.map((p) => p.name), params.map((p) => p.value), tg.state.map((s) => s.input), stateVals);
    const out = userBatch !== undefined && fixedBatch(trained, inputName) === undefined ? withStaticBatch(trained, userBatch) : trained;
    if (bnMode !== 'none') foldBatchNorm(out);
    out.metadata.delete(CKPT_KEY);
    const result: FinetuneResult = { model: out, history, seconds: (performance.now() - t0) / 1000, ...(rebatched && userBatch !== undefined ? { rebatched: userBatch } : {}) };
    if (initial?.acc !== undefined) result.initialValAcc = initial.acc;
    if (initial?.relMse !== undefined) result.initialValRelMse = initial.relMse;
    return result;
  } finally {
    await runner.release();
    await evalRunner?.release();
    await evalTeacherRunner?.release();
  }
}

/** The convs of a YOLO head that get no re-inserted BatchNorm (YoloHead.plainConvs); the head is required with `detect`. */
async function yoloPlainConvs(model: Model, input: string, shape: number[], detect: boolean): Promise<Set<string> | undefined> {
  const shapes = (await probeTypes(model, { [input]: shape })).shapes;
  try {
    return new Set(findYoloHead(model, shapes, shape).plainConvs);
  } catch (e) {
    if (detect || !(e instanceof ShearsError)) throw e;
    return undefined;
  }
}

/** The batch size a model's input declares when it is a fixed number (exports with a static batch). */
function fixedBatch(model: Model, input: string): number | undefined {
  const d = model.graph.inputs.find((i) => i.name === input)?.type?.shape?.[0];
  return typeof d === 'number' && d > 0 ? d : undefined;
}

/** A copy of `model` with the given initializers replaced by new tensors holding `values`. */
function withValues(model: Model, names: string[], values: Float32Array[], stateNames: string[], stateValues: Float32Array[]): Model {
  const m = cloneModel(model);
  const put = (k: string, v: Float32Array) => {
    const t = m.graph.initializers.get(k)!;
    m.graph.initializers.set(k, { ...t, dims: [...t.dims], data: Float32Array.from(v) });
  };
  names.forEach((k, i) => put(k, values[i]!));
  stateNames.forEach((k, i) => put(k, stateValues[i]!));
  return m;
}

/** Evaluates top-1 accuracy of a model on labelled data. */
export async function evaluateAccuracy(model: Model, data: ArrayData | Dataset | SampleStore, opts: { batch?: number; threads?: number } = {}): Promise<number> {
  const d = await toStore(data);
  const labels = d.labels;
  if (!labels) throw new ShearsError('accuracy needs labelled data');
  const runner: Runner = await createSession(model, opts.threads ? { threads: opts.threads } : {});
  try {
    const inputName = model.graph.inputs.find((i) => !model.graph.initializers.has(i.name))!.name;
    const out = runner.outputNames[0]!;
    const eb = opts.batch ?? 500;
    let correct = 0;
    for await (const { start: s, data: chunk } of d.chunks(eb)) {
      const n = chunk.n;
      const y = (await runner.run({ [inputName]: floatView([n, ...d.sampleDims], chunk.x) }, [out]))[out]!;
      correct += argmaxCorrect(y.data as Float32Array, labels, Array.from({ length: n }, (_, i) => s + i), y.dims[1]!);
    }
    return correct / d.n;
  } finally {
    await runner.release();
  }
}

function stderrProgress(): (p: Progress) => void {
  const tty = process.stderr.isTTY;
  let last = 0;
  return (p) => {
    const now = Date.now();
    if (!tty && now - last < 10000 && p.step !== p.steps) return;
    last = now;
    const w = 24;
    const done = Math.round((p.step / p.steps) * w);
    const eta = `${Math.floor(p.etaSec / 60)}:${String(Math.floor(p.etaSec % 60)).padStart(2, '0')}`;
    const line = `epoch ${p.epoch}/${p.epochs} [${'#'.repeat(done)}${'.'.repeat(w - done)}] ${p.step}/${p.steps} loss ${p.loss.toFixed(4)}${p.acc !== undefined ? ` acc ${(p.acc * 100).toFixed(2)}%` : ''} ${p.imagesPerSec.toFixed(0)} img/s ETA ${eta} lr ${p.lr.toExponential(2)}`;
    process.stderr.write(tty ? `\r${line}\x1b[K` : `${line}\n`);
  };
}
