/**
 * Data set spec strings, for the CLI (`--data`, `--calib`):
 *
 *   idx:IMAGES[,LABELS]        IDX images file (labels found beside it by the standard naming when not given)
 *   idx:DIR[@SPLIT]            a directory of IDX files; SPLIT is the name prefix (train, t10k; 'test' = t10k);
 *                              without it the test split (t10k) when there is one
 *   folder:DIR                 class subfolders of PNG/JPEG images (labels = sorted class index), or a flat
 *                              folder of images (no labels)
 *   npy:X.npy[,LABELS.npy]     samples along the first axis: [N,H,W], [N,H,W,C], [N,C,H,W] images, else tensors
 *   npz:FILE.npz[,XKEY[,YKEY]] arrays in an .npz (default keys: x/images/data/arr_0 and y/labels/arr_1)
 *   yolo:DATA.yaml[@SPLIT]     Ultralytics YOLO detection data (data/yolo.ts): a data.yaml or a folder holding
 *                              one; SPLIT val (default), train or test
 *   coco:ANN.json,images=DIR   COCO JSON detection annotations with the images in DIR
 *   tokens:FILE[,context=T]    token ids for language models (data/tokens.ts): FILE.bin raw bytes (one token per
 *                              byte), FILE.npy a 1-D integer array; windows of the model's context length T
 *   PATH[@SPLIT]               auto-detected: a data.yaml or a directory holding one (yolo), a directory holding IDX files, a folder of images or class
 *                              subfolders, a .npy/.npz file, an IDX file (by name or magic number)
 */
import { ShearsError } from '../errors.js';
import { platform } from '../fs/platform.js';
import { pathExists } from './read.js';
import { Dataset } from './dataset.js';
import { folderSource, isImageFolder } from './folder.js';
import { idxFileInDir, idxImageFiles, idxSource } from './idx.js';
import { npySource, npzSource } from './npy.js';
import type { PreprocessSpec } from './preprocess.js';
import { openTokens, parseTokenOptions } from './tokens.js';
import type { Source } from './types.js';
import { cocoSource, findDataYaml, yoloSource } from './yolo.js';

export type DataKind = 'idx' | 'folder' | 'npy' | 'npz' | 'tokens' | 'yolo' | 'coco';
const KINDS: DataKind[] = ['idx', 'folder', 'npy', 'npz', 'tokens', 'yolo', 'coco'];

export interface ParsedSpec {
  kind: DataKind;
  /** Main path (images file, directory, npy/npz file). */
  path: string;
  /** Extra comma-separated parts: a labels file, or npz keys. */
  extra: string[];
  split?: string;
}

function exists(p: string): boolean {
  return p !== '' && pathExists(p);
}

/** Splits 'PATH@SPLIT' when PATH exists and 'PATH@SPLIT' does not. */
function splitSuffix(p: string): { path: string; split?: string } {
  const at = p.lastIndexOf('@');
  if (at > 0 && !exists(p) && exists(p.slice(0, at)) && /^[\w.-]+$/.test(p.slice(at + 1))) return { path: p.slice(0, at), split: p.slice(at + 1) };
  return { path: p };
}

function looksLikeIdx(path: string): boolean {
  if (/idx\d[-.]ubyte(\.gz)?$/i.test(path)) return true;
  try {
    const b = new Uint8Array(4);
    b.set(platform().read(path, 0, 4));
    return b[0] === 0 && b[1] === 0 && [8, 9, 0xb, 0xc, 0xd, 0xe].includes(b[2]!) && b[3]! > 0 && b[3]! < 8;
  } catch {
    return false;
  }
}

/** Refuses a data path that is neither a regular file nor a directory (a FIFO or device would block or never end). */
function checkFileOrDir(spec: string, path: string): 'file' | 'dir' {
  const st = platform().stat(path);
  if (st.isDirectory) return 'dir';
  if (st.isFile) return 'file';
  throw new ShearsError(`data spec '${spec}': '${path}' is neither a regular file nor a directory`);
}

/** Parses a spec string (see the module comment). Throws a ShearsError naming what is wrong. */
export function parseDataSpec(spec: string): ParsedSpec {
  if (spec.trim() === '') throw new ShearsError('empty data spec');
  const m = /^([a-z]+):(.*)$/i.exec(spec);
  if (m && KINDS.includes(m[1]!.toLowerCase() as DataKind) && !exists(spec)) {
    const kind = m[1]!.toLowerCase() as DataKind;
    const rest = m[2]!;
    const parts = exists(rest) ? [rest] : rest.split(',');
    const { path, split } = splitSuffix(parts[0]!);
    if (!exists(path)) throw new ShearsError(`data spec '${spec}': '${path}' does not exist`);
    checkFileOrDir(spec, path);
    const out: ParsedSpec = { kind, path, extra: parts.slice(1) };
    if (split !== undefined) out.split = split;
    return out;
  }
  const { path, split } = splitSuffix(spec);
  if (!exists(path)) {
    throw new ShearsError(`data spec '${spec}': no such file or directory (use idx:, folder:, npy:, npz:, yolo:, coco: or tokens: followed by a path)`);
  }
  const withSplit = (p: ParsedSpec): ParsedSpec => (split !== undefined ? { ...p, split } : p);
  if (/\.ya?ml$/i.test(path) || (platform().stat(path).isDirectory && findDataYaml(path) !== undefined)) return withSplit({ kind: 'yolo', path, extra: [] });
  if (checkFileOrDir(spec, path) === 'dir') {
    if (idxImageFiles(path).size > 0) return withSplit({ kind: 'idx', path, extra: [] });
    if (isImageFolder(path)) return withSplit({ kind: 'folder', path, extra: [] });
    throw new ShearsError(`data spec '${spec}': the directory holds neither IDX files nor PNG/JPEG images (directly or in class subfolders)`);
  }
  if (/\.npy$/i.test(path)) return withSplit({ kind: 'npy', path, extra: [] });
  if (/\.npz$/i.test(path)) return withSplit({ kind: 'npz', path, extra: [] });
  if (looksLikeIdx(path)) return withSplit({ kind: 'idx', path, extra: [] });
  throw new ShearsError(`data spec '${spec}': cannot tell the format of '${path}' (expected an IDX, .npy or .npz file, or a directory)`);
}

export function openSource(spec: string): Source {
  const p = parseDataSpec(spec);
  if (p.split !== undefined && !(p.kind === 'idx' && platform().stat(p.path).isDirectory) && p.kind !== 'yolo') {
    throw new ShearsError(`data spec '${spec}': '@${p.split}' names a split, which only an IDX directory has`);
  }
  const tooMany = (max: number, what: string) => {
    if (p.extra.length > max) throw new ShearsError(`data spec '${spec}': too many comma-separated parts (${what})`);
  };
  switch (p.kind) {
    case 'tokens':
      throw new ShearsError(`data spec '${spec}': token data is a stream cut into windows, not a source of samples (open it with openDataset)`);
    case 'idx': {
      tooMany(1, 'idx:IMAGES[,LABELS]');
      const images = platform().stat(p.path).isDirectory ? idxFileInDir(p.path, p.split) : p.path;
      const labels = p.extra[0];
      if (labels !== undefined && !exists(labels)) throw new ShearsError(`data spec '${spec}': labels file '${labels}' does not exist`);
      return idxSource(images, labels);
    }
    case 'folder':
      tooMany(0, 'folder:DIR');
      if (!platform().stat(p.path).isDirectory) throw new ShearsError(`data spec '${spec}': '${p.path}' is not a directory`);
      return folderSource(p.path);
    case 'npy': {
      tooMany(1, 'npy:X.npy[,LABELS.npy]');
      const labels = p.extra[0];
      if (labels !== undefined && !exists(labels)) throw new ShearsError(`data spec '${spec}': labels file '${labels}' does not exist`);
      return npySource(p.path, labels);
    }
    case 'npz':
      tooMany(2, 'npz:FILE.npz[,XKEY[,YKEY]]');
      return npzSource(p.path, p.extra[0] || undefined, p.extra[1] || undefined);
    case 'yolo':
      tooMany(0, 'yolo:DATA.yaml[@SPLIT]');
      return yoloSource(p.path, p.split ?? 'val');
    case 'coco': {
      tooMany(1, 'coco:ANN.json,images=DIR');
      const m = /^images=(.+)$/.exec(p.extra[0] ?? '');
      if (!m) throw new ShearsError(`data spec '${spec}': give the images folder as coco:ANN.json,images=DIR`);
      return cocoSource(p.path, m[1]!);
    }
  }
}

/** Opens a data set from a spec string (see the module comment), with optional preprocessing. */
export function openDataset(spec: string, preprocess: PreprocessSpec = {}): Dataset {
  const p = parseDataSpec(spec);
  if (p.kind === 'tokens') {
    if (p.split !== undefined) throw new ShearsError(`data spec '${spec}': '@${p.split}' names a split, which only an IDX directory has`);
    if (platform().stat(p.path).isDirectory) throw new ShearsError(`data spec '${spec}': '${p.path}' is a directory, not a token file (.bin bytes or a 1-D .npy)`);
    return openTokens(p.path, parseTokenOptions(spec, p.extra));
  }
  return new Dataset(openSource(spec), preprocess);
}
