/**
 * Detection data: the Ultralytics YOLO layout and COCO JSON annotations.
 *
 * YOLO: a `data.yaml` (keys path, train, val, test, nc, names; names a list or a {index: name} mapping; `path`
 * relative to the yaml's folder, the split entries relative to `path`: a folder of images (searched
 * recursively), a .txt file listing images, or a list of those). An image's label file is found by Ultralytics'
 * rule: the last '/images/' of its path replaced by '/labels/', the extension by '.txt'. Lines `class cx cy w h`
 * (normalised to [0, 1]; polygon lines `class x1 y1 x2 y2 ...` give their bounding box); an image without a label
 * file, or with an empty one, is a background image. Exact duplicate lines are dropped (as Ultralytics does).
 * Coordinates may exceed [0, 1] by at most 1e-6 (rounding in the writer), then are clamped; anything further out
 * is refused naming the file and line.
 *
 * COCO: an annotations JSON (images [{id, file_name, width, height}], annotations [{image_id, category_id,
 * bbox [x, y, w, h] in pixels, iscrowd}], categories [{id, name}]) with the images in a folder. Category ids map
 * to 0..nc-1 in sorted id order; crowd annotations and boxes of zero width or height are skipped (as Ultralytics'
 * converter); images without annotations are background images.
 *
 * The parsing is isomorphic; files are read through data/read.ts.
 */
import { parseDocument } from 'yaml';
import { ShearsError } from '../errors.js';
import type { Dataset } from './dataset.js';
import { decodeImage, isImageFile } from './image.js';
import { letterboxGeometry, roundHalfEven, type PreprocessSpec } from './preprocess.js';
import { isDirectory, isRegularFile, listNames, readAll } from './read.js';
import type { RawSample, Source } from './types.js';

/** The objects of one image: classes and boxes (cx, cy, w, h) normalised to the image size. */
export interface ImageObjects {
  classes: Int32Array;
  boxes: Float64Array;
}

/** The ground truth of a detection source. */
export interface DetectionLabels {
  nc: number;
  names: string[];
  /** The objects of source sample i. */
  objects(i: number): ImageObjects;
  /** Objects in all images. */
  readonly instances: number;
  /** Images without objects. */
  readonly backgrounds: number;
}

/** A source of images with detection ground truth. */
export interface DetectionSource extends Source {
  readonly detection: DetectionLabels;
}

export function isDetectionSource(s: Source): s is DetectionSource {
  return (s as Partial<DetectionSource>).detection !== undefined;
}

/** Tolerance on label coordinates outside [0, 1] (then clamped). */
export const LABEL_EPSILON = 1e-6;

// ------------------------------------------------------------------------------------------------------ paths

export function dirOf(p: string): string {
  const i = p.replace(/\/+$/, '').lastIndexOf('/');
  return i < 0 ? '.' : i === 0 ? '/' : p.slice(0, i);
}

export function joinPath(base: string, rel: string): string {
  if (rel.startsWith('/') || /^[a-z]:[\\/]/i.test(rel)) return normalizePath(rel);
  return normalizePath(`${base.replace(/\/+$/, '')}/${rel}`);
}

function normalizePath(p: string): string {
  const abs = p.startsWith('/');
  const out: string[] = [];
  for (const part of p.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..' && out.length && out[out.length - 1] !== '..') out.pop();
    else if (part === '..' && abs) continue;
    else out.push(part);
  }
  const s = out.join('/');
  return abs ? `/${s}` : s || '.';
}

/** Ultralytics' img2label_paths: the last '/images/' replaced by '/labels/', the extension by '.txt'. */
export function labelPathOf(image: string): string {
  const i = image.lastIndexOf('/images/');
  const p = i < 0 ? image : `${image.slice(0, i)}/labels/${image.slice(i + '/images/'.length)}`;
  const dot = p.lastIndexOf('.');
  return `${dot > p.lastIndexOf('/') ? p.slice(0, dot) : p}.txt`;
}

// ---------------------------------------------------------------------------------------------- label files

/** Parses a YOLO label file (see the module comment); `file` names it in errors, with the line. */
export function parseYoloLabels(text: string, file: string, nc: number): ImageObjects {
  const classes: number[] = [];
  const boxes: number[] = [];
  const seen = new Set<string>();
  const lines = text.split(/\r?\n/);
  lines.forEach((raw, li) => {
    const line = raw.trim();
    if (line === '') return;
    const where = `label file '${file}' line ${li + 1}`;
    const f = line.split(/\s+/);
    if (f.length < 5 || (f.length > 5 && (f.length - 1) % 2 !== 0) || (f.length > 5 && f.length < 7)) {
      throw new ShearsError(`${where}: expected 'class cx cy w h' (or a polygon 'class x1 y1 x2 y2 x3 y3 ...'), got ${f.length} fields: '${line.slice(0, 80)}'`);
    }
    const v = f.map(Number);
    const bad = v.findIndex((x) => !Number.isFinite(x));
    if (bad >= 0) throw new ShearsError(`${where}: '${f[bad]}' is not a number`);
    const c = v[0]!;
    if (!Number.isInteger(c) || c < 0 || c >= nc) throw new ShearsError(`${where}: class ${f[0]} is outside 0..${nc - 1} (nc = ${nc})`);
    for (let k = 1; k < v.length; k++) {
      if (v[k]! < -LABEL_EPSILON || v[k]! > 1 + LABEL_EPSILON) {
        throw new ShearsError(`${where}: coordinate ${f[k]} is outside [0, 1] (labels are normalised to the image size)`);
      }
      v[k] = Math.min(1, Math.max(0, v[k]!));
    }
    let box: number[];
    if (v.length === 5) {
      box = v.slice(1);
    } else {
      let x1 = Infinity, y1 = Infinity, x2 = -Infinity, y2 = -Infinity;
      for (let k = 1; k < v.length; k += 2) {
        x1 = Math.min(x1, v[k]!);
        x2 = Math.max(x2, v[k]!);
        y1 = Math.min(y1, v[k + 1]!);
        y2 = Math.max(y2, v[k + 1]!);
      }
      box = [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1];
    }
    const key = `${c} ${box.join(' ')}`;
    if (seen.has(key)) return;
    seen.add(key);
    classes.push(c);
    boxes.push(...box);
  });
  return { classes: Int32Array.from(classes), boxes: Float64Array.from(boxes) };
}

// ----------------------------------------------------------------------------------------------- data.yaml

export interface YoloDataConfig {
  /** The dataset root (absolute or relative to the working folder): `path` resolved against the yaml's folder. */
  root: string;
  /** Split entries, resolved against the root. */
  splits: Record<string, string[]>;
  nc: number;
  names: string[];
}

/** Parses a data.yaml's text; `file` is its path (the root is resolved against its folder). */
export function parseDataYaml(text: string, file: string): YoloDataConfig {
  const doc = parseDocument(text);
  if (doc.errors.length) {
    const e = doc.errors[0]!;
    const line = e.linePos?.[0]?.line;
    throw new ShearsError(`data.yaml '${file}'${line !== undefined ? ` line ${line}` : ''} does not parse: ${e.message.split('\n')[0]}`);
  }
  const o = doc.toJS() as unknown;
  if (typeof o !== 'object' || o === null || Array.isArray(o)) throw new ShearsError(`data.yaml '${file}': expected a mapping of keys (path, train, val, nc, names)`);
  const y = o as Record<string, unknown>;
  const lineOf = (key: string) => {
    const node = doc.get(key, true) as { range?: [number, number, number] } | undefined;
    const r = node?.range?.[0];
    if (r === undefined) return '';
    return ` line ${text.slice(0, r).split('\n').length}`;
  };
  let names: string[] | undefined;
  const n = y['names'];
  if (Array.isArray(n)) names = n.map((x) => String(x));
  else if (typeof n === 'object' && n !== null) {
    const entries = Object.entries(n as Record<string, unknown>);
    const idx = entries.map(([k]) => Number(k));
    if (idx.some((k) => !Number.isInteger(k) || k < 0)) throw new ShearsError(`data.yaml '${file}'${lineOf('names')}: names must be a list or a mapping from class index (0, 1, ...) to name`);
    names = [];
    for (const [k, v] of entries) names[Number(k)] = String(v);
    const missing = Array.from({ length: names.length }, (_, i) => i).filter((i) => names![i] === undefined);
    if (missing.length) throw new ShearsError(`data.yaml '${file}'${lineOf('names')}: names has no entry for class ${missing.slice(0, 5).join(', ')} (indices must run 0..${names.length - 1})`);
  } else if (n !== undefined) throw new ShearsError(`data.yaml '${file}'${lineOf('names')}: names must be a list or a mapping from class index to name`);
  let nc: number | undefined;
  if (y['nc'] !== undefined) {
    const v = y['nc'];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new ShearsError(`data.yaml '${file}'${lineOf('nc')}: nc must be a positive integer, not ${JSON.stringify(v)}`);
    nc = v;
  }
  if (names && nc !== undefined && names.length !== nc) {
    throw new ShearsError(`data.yaml '${file}'${lineOf('nc')}: nc is ${nc} but names lists ${names.length} classes`);
  }
  if (!names && nc === undefined) throw new ShearsError(`data.yaml '${file}': neither names nor nc is given`);
  nc ??= names!.length;
  if (nc < 1) throw new ShearsError(`data.yaml '${file}': names is empty`);
  names ??= Array.from({ length: nc }, (_, i) => `class${i}`);
  const dir = dirOf(file);
  const p = y['path'];
  if (p !== undefined && p !== null && typeof p !== 'string') throw new ShearsError(`data.yaml '${file}'${lineOf('path')}: path must be a string`);
  const root = typeof p === 'string' && p.trim() !== '' ? joinPath(dir, p.trim()) : dir;
  const splits: Record<string, string[]> = {};
  for (const key of ['train', 'val', 'test']) {
    const v = y[key];
    if (v === undefined || v === null || v === '') continue;
    const list = Array.isArray(v) ? v : [v];
    if (!list.every((x) => typeof x === 'string' && x.trim() !== '')) throw new ShearsError(`data.yaml '${file}'${lineOf(key)}: ${key} must be a path or a list of paths`);
    splits[key] = (list as string[]).map((x) => joinPath(root, x.trim()));
  }
  return { root, splits, nc, names };
}

// ------------------------------------------------------------------------------------------------- sources

/** Image files under a folder, recursively, sorted by path; files in formats shears cannot decode refused. */
function listImages(dir: string, what: string): string[] {
  const out: string[] = [];
  const other: string[] = [];
  const walk = (d: string) => {
    for (const name of listNames(d)) {
      if (name.startsWith('.')) continue;
      const p = `${d.replace(/\/+$/, '')}/${name}`;
      if (isDirectory(p)) walk(p);
      else if (isImageFile(name)) out.push(p);
      else if (/\.(bmp|dng|mpo|pfm|tif|tiff|webp|heic|avif)$/i.test(name)) other.push(p);
    }
  };
  walk(dir);
  if (other.length) throw new ShearsError(`${what}: ${other.length} images in formats shears does not decode (only PNG and JPEG), e.g. '${other[0]}'`);
  return out.sort();
}

function readText(path: string): string {
  return new TextDecoder().decode(readAll(path));
}

/** The image files a split entry names: a folder (recursively), a .txt list, or one image. */
function splitImages(entry: string, what: string): string[] {
  if (isDirectory(entry)) return listImages(entry, what);
  if (isRegularFile(entry) && /\.txt$/i.test(entry)) {
    const parent = dirOf(entry);
    const out: string[] = [];
    readText(entry).split(/\r?\n/).forEach((raw, li) => {
      const l = raw.trim();
      if (l === '') return;
      const p = l.startsWith('./') ? joinPath(parent, l.slice(2)) : joinPath(dirOf(parent), l);
      if (!isImageFile(p)) return;
      if (!isRegularFile(p)) throw new ShearsError(`image list '${entry}' line ${li + 1}: '${p}' does not exist`);
      out.push(p);
    });
    return out.sort();
  }
  if (isRegularFile(entry) && isImageFile(entry)) return [entry];
  throw new ShearsError(`${what}: '${entry}' does not exist (expected a folder of images or a .txt list of images)`);
}

/** A detection source over image files with their objects (normalised), decoding images when read. */
function imageDetectionSource(files: string[], objects: ImageObjects[], nc: number, names: string[], description: string): DetectionSource {
  let instances = 0;
  let backgrounds = 0;
  for (const o of objects) {
    instances += o.classes.length;
    if (o.classes.length === 0) backgrounds++;
  }
  return {
    size: files.length,
    labels: undefined,
    classes: names,
    description: `${description} (${files.length} images, ${instances} objects, ${backgrounds} background images, ${nc} classes)`,
    async read(indices: readonly number[]): Promise<RawSample[]> {
      return indices.map((i) => {
        const f = files[i];
        if (f === undefined) throw new ShearsError(`sample index ${i} is outside the data set (${files.length} images)`);
        return { kind: 'image' as const, image: decodeImage(readAll(f), f) };
      });
    },
    itemName: (i) => files[i] ?? `[${i}]`,
    detection: {
      nc,
      names,
      objects: (i) => {
        const o = objects[i];
        if (!o) throw new ShearsError(`sample index ${i} is outside the data set (${files.length} images)`);
        return o;
      },
      instances,
      backgrounds,
    },
  };
}

/** Finds the data.yaml a path names: the file itself, or data.yaml (else the only .yaml) in a folder. */
export function findDataYaml(path: string): string | undefined {
  if (isRegularFile(path)) return /\.ya?ml$/i.test(path) ? path : undefined;
  if (!isDirectory(path)) return undefined;
  const names = listNames(path);
  if (names.includes('data.yaml')) return joinPath(path, 'data.yaml');
  if (names.includes('data.yml')) return joinPath(path, 'data.yml');
  const yamls = names.filter((n) => /\.ya?ml$/i.test(n));
  return yamls.length === 1 ? joinPath(path, yamls[0]!) : undefined;
}

/** The images and labels of one split of an Ultralytics data.yaml (a yaml file or a folder holding one). */
export function yoloSource(path: string, split = 'val'): DetectionSource {
  const file = findDataYaml(path);
  if (!file) throw new ShearsError(`'${path}' is neither a data.yaml nor a folder holding one`);
  const cfg = parseDataYaml(readText(file), file);
  const entries = cfg.splits[split];
  if (!entries) {
    const have = Object.keys(cfg.splits);
    throw new ShearsError(`data.yaml '${file}' has no '${split}' split${have.length ? ` (it has ${have.join(', ')})` : ''}`);
  }
  const files: string[] = [];
  for (const e of entries) {
    const imgs = splitImages(e, `data.yaml '${file}' ${split}`);
    if (isDirectory(e)) {
      // the labels folder the rule points at must exist (an image without a label file is background)
      const labelsDir = labelPathOf(`${e.replace(/\/+$/, '')}/x`).slice(0, -'/x.txt'.length);
      if (labelsDir !== e.replace(/\/+$/, '') && !isDirectory(labelsDir)) {
        throw new ShearsError(`data.yaml '${file}' ${split}: the labels folder '${labelsDir}' for the images in '${e}' does not exist (labels are found by replacing the last /images/ with /labels/)`);
      }
    }
    files.push(...imgs);
  }
  if (files.length === 0) throw new ShearsError(`data.yaml '${file}' ${split}: no PNG or JPEG images in ${entries.map((e) => `'${e}'`).join(', ')}`);
  const objects = files.map((f) => {
    const lp = labelPathOf(f);
    if (!isRegularFile(lp)) return { classes: new Int32Array(0), boxes: new Float64Array(0) };
    return parseYoloLabels(readText(lp), lp, cfg.nc);
  });
  return imageDetectionSource(files, objects, cfg.nc, cfg.names, `yolo ${file} @${split}`);
}

export interface CocoAnnotations {
  names: string[];
  /** Category id of each class index. */
  categoryIds: number[];
  images: { fileName: string; width: number; height: number; objects: ImageObjects }[];
}

/** Parses a COCO annotations JSON text (see the module comment); `file` names it in errors. */
export function parseCocoJson(text: string, file: string): CocoAnnotations {
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch (e) {
    throw new ShearsError(`COCO annotations '${file}' are not valid JSON: ${(e as Error).message}`);
  }
  const o = j as Record<string, unknown>;
  if (typeof o !== 'object' || o === null || !Array.isArray(o['images']) || !Array.isArray(o['annotations']) || !Array.isArray(o['categories'])) {
    throw new ShearsError(`COCO annotations '${file}': expected an object with images, annotations and categories lists`);
  }
  const cats = o['categories'] as Record<string, unknown>[];
  const catIds = cats.map((c, i) => {
    const id = c?.['id'];
    if (typeof id !== 'number' || !Number.isInteger(id)) throw new ShearsError(`COCO annotations '${file}': categories[${i}] has no integer id`);
    return id;
  });
  if (new Set(catIds).size !== catIds.length) throw new ShearsError(`COCO annotations '${file}': category ids repeat`);
  const sortedIds = [...catIds].sort((a, b) => a - b);
  const classOf = new Map(sortedIds.map((id, k) => [id, k]));
  const names = sortedIds.map((id) => String(cats[catIds.indexOf(id)]!['name'] ?? id));
  const images = (o['images'] as Record<string, unknown>[]).map((im, i) => {
    const id = im?.['id'];
    const fileName = im?.['file_name'];
    const width = im?.['width'];
    const height = im?.['height'];
    if (typeof fileName !== 'string' || (typeof id !== 'number' && typeof id !== 'string')) throw new ShearsError(`COCO annotations '${file}': images[${i}] needs an id and a file_name`);
    if (typeof width !== 'number' || typeof height !== 'number' || !(width > 0) || !(height > 0)) throw new ShearsError(`COCO annotations '${file}': images[${i}] ('${fileName}') needs a positive width and height`);
    return { id, fileName, width, height, classes: [] as number[], boxes: [] as number[] };
  });
  const byId = new Map(images.map((im) => [im.id, im]));
  if (byId.size !== images.length) throw new ShearsError(`COCO annotations '${file}': image ids repeat`);
  (o['annotations'] as Record<string, unknown>[]).forEach((a, i) => {
    const im = byId.get(a?.['image_id'] as number);
    if (!im) throw new ShearsError(`COCO annotations '${file}': annotations[${i}] names image_id ${JSON.stringify(a?.['image_id'])}, which is not in images`);
    const c = classOf.get(a['category_id'] as number);
    if (c === undefined) throw new ShearsError(`COCO annotations '${file}': annotations[${i}] names category_id ${JSON.stringify(a['category_id'])}, which is not in categories`);
    if (a['iscrowd']) return;
    const b = a['bbox'];
    if (!Array.isArray(b) || b.length !== 4 || !b.every((x) => typeof x === 'number' && Number.isFinite(x))) throw new ShearsError(`COCO annotations '${file}': annotations[${i}] bbox must be [x, y, w, h] numbers`);
    const [x, y, w, h] = b as number[];
    if (!(w! > 0) || !(h! > 0)) return;
    im.classes.push(c);
    im.boxes.push((x! + w! / 2) / im.width, (y! + h! / 2) / im.height, w! / im.width, h! / im.height);
  });
  return {
    names,
    categoryIds: sortedIds,
    images: images.map((im) => ({ fileName: im.fileName, width: im.width, height: im.height, objects: { classes: Int32Array.from(im.classes), boxes: Float64Array.from(im.boxes) } })),
  };
}

/** The images of a COCO annotations file, read from `imagesDir`. */
export function cocoSource(annotations: string, imagesDir: string): DetectionSource {
  const ann = parseCocoJson(readText(annotations), annotations);
  if (!isDirectory(imagesDir)) throw new ShearsError(`COCO images folder '${imagesDir}' does not exist`);
  const files = ann.images.map((im) => joinPath(imagesDir, im.fileName));
  const missing = files.filter((f) => !isRegularFile(f));
  if (missing.length) throw new ShearsError(`COCO annotations '${annotations}': ${missing.length} of ${files.length} images are not in '${imagesDir}', e.g. '${missing[0]}'`);
  if (files.length === 0) throw new ShearsError(`COCO annotations '${annotations}' list no images`);
  return imageDetectionSource(files, ann.images.map((im) => im.objects), ann.names.length, ann.names, `coco ${annotations}`);
}

// ------------------------------------------------------------------------------------------- ground truth

/** The ground truth of one image in pixels. */
export interface ImageTruth {
  /** The image file (the source's item name). */
  file: string;
  /** Original size. */
  width: number;
  height: number;
  classes: Int32Array;
  /** Boxes (x1, y1, x2, y2) in original image pixels. */
  boxes: Float64Array;
  /** Boxes (x1, y1, x2, y2) in model-input pixels after the preprocessing (letterbox or resize). */
  inputBoxes: Float64Array;
}

/** Normalised (cx, cy, w, h) boxes in pixels (x1, y1, x2, y2) of a w x h image. */
export function boxesInPixels(boxes: ArrayLike<number>, width: number, height: number): Float64Array {
  const out = new Float64Array(boxes.length);
  for (let i = 0; i < boxes.length; i += 4) {
    const cx = boxes[i]! * width, cy = boxes[i + 1]! * height, bw = boxes[i + 2]! * width, bh = boxes[i + 3]! * height;
    out[i] = cx - bw / 2;
    out[i + 1] = cy - bh / 2;
    out[i + 2] = cx + bw / 2;
    out[i + 3] = cy + bh / 2;
  }
  return out;
}

/**
 * How the preprocessing maps original pixels (x, y) of an h x w image to input pixels: x * sx + dx, y * sy + dy.
 * Letterbox: one ratio and the padding; resize (and crop): per-axis scales and the crop offset.
 */
export function inputTransform(spec: PreprocessSpec, h: number, w: number): { sx: number; sy: number; dx: number; dy: number } {
  if (spec.letterbox) {
    const g = letterboxGeometry(h, w, spec.letterbox[0], spec.letterbox[1]);
    return { sx: g.ratio, sy: g.ratio, dx: g.left, dy: g.top };
  }
  let rh = h, rw = w;
  const r = spec.resize;
  if (typeof r === 'number') [rh, rw] = h <= w ? [r, Math.trunc((r * w) / h)] : [Math.trunc((r * h) / w), r];
  else if (r) [rh, rw] = r;
  let dx = 0, dy = 0;
  if (spec.crop) {
    dy = -roundHalfEven((rh - spec.crop[0]) / 2);
    dx = -roundHalfEven((rw - spec.crop[1]) / 2);
  }
  return { sx: rw / w, sy: rh / h, dx, dy };
}

/** The ground truth of sample `pos` of a detection data set whose image is h x w (Batch.sizes gives it). */
export function imageTruth(ds: Dataset, pos: number, height: number, width: number): ImageTruth {
  const src = ds.source;
  if (!isDetectionSource(src)) throw new ShearsError(`data set ${ds.description} has no detection labels (give yolo:DATA.yaml or coco:ANN.json,images=DIR)`);
  const i = ds.sourceIndex(pos);
  const o = src.detection.objects(i);
  const boxes = boxesInPixels(o.boxes, width, height);
  const t = inputTransform(ds.preprocess, height, width);
  const inputBoxes = new Float64Array(boxes.length);
  for (let k = 0; k < boxes.length; k += 2) {
    inputBoxes[k] = boxes[k]! * t.sx + t.dx;
    inputBoxes[k + 1] = boxes[k + 1]! * t.sy + t.dy;
  }
  return { file: src.itemName(i), width, height, classes: o.classes, boxes, inputBoxes };
}
