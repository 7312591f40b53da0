/**
 * Image folders: one subfolder per class (DIR/<class>/*.png|jpg|jpeg; labels are the class indices in sorted
 * class-name order, as torchvision's ImageFolder), or a flat folder of images (no labels). Files are listed up
 * front and decoded only when a batch asks for them.
 */
import { ShearsError } from '../errors.js';
import { errorCode, platform } from '../fs/platform.js';
import { decodeImage, isImageFile } from './image.js';
import { listNames } from './read.js';
import type { Source } from './types.js';

const join = (...parts: string[]) => platform().join(...parts);

/**
 * The visible entries of a folder and whether each is a folder. An entry named like an image must be a regular
 * file (a FIFO would block the read forever, a broken link cannot be read); other entries that cannot be
 * looked at are skipped, as every non-image file is.
 */
function listDir(dir: string): { name: string; dir: boolean }[] {
  const out: { name: string; dir: boolean }[] = [];
  for (const name of listNames(dir)) {
    if (name.startsWith('.')) continue;
    const path = join(dir, name);
    let st;
    try {
      st = platform().stat(path);
    } catch (e) {
      if (isImageFile(name)) throw new ShearsError(`cannot read '${path}': ${errorCode(e)}`);
      continue;
    }
    if (st.isDirectory) out.push({ name, dir: true });
    else if (!isImageFile(name) || st.isFile) out.push({ name, dir: false });
    else throw new ShearsError(`cannot read '${path}': not a regular file`);
  }
  return out;
}

/** Whether a directory looks like an image folder (class subfolders with images, or images directly). */
export function isImageFolder(dir: string): boolean {
  const entries = listDir(dir);
  if (entries.some((e) => !e.dir && isImageFile(e.name))) return true;
  return entries.some((e) => e.dir && listDir(join(dir, e.name)).some((f) => !f.dir && isImageFile(f.name)));
}

export function folderSource(dir: string): Source {
  const entries = listDir(dir);
  const classDirs = entries.filter((e) => e.dir);
  const files: string[] = [];
  let labels: Int32Array | undefined;
  let classes: string[] | undefined;
  const classFiles = classDirs.map((c) => listDir(join(dir, c.name)).filter((f) => !f.dir && isImageFile(f.name)).map((f) => join(dir, c.name, f.name)));
  if (classFiles.some((f) => f.length > 0)) {
    classes = classDirs.map((c) => c.name);
    const lab: number[] = [];
    classFiles.forEach((fs, k) => {
      for (const f of fs) {
        files.push(f);
        lab.push(k);
      }
    });
    labels = Int32Array.from(lab);
  } else {
    for (const e of entries) if (!e.dir && isImageFile(e.name)) files.push(join(dir, e.name));
  }
  if (files.length === 0) throw new ShearsError(`folder '${dir}' holds no PNG or JPEG images (directly or in class subfolders)`);
  const description = classes
    ? `folder ${dir} (${files.length} images in ${classes.length} classes)`
    : `folder ${dir} (${files.length} images, no labels)`;
  const src: Source = {
    size: files.length,
    labels,
    description,
    async read(indices) {
      const bytes = await Promise.all(
        indices.map(async (i) => {
          const f = files[i];
          if (f === undefined) throw new ShearsError(`sample index ${i} is outside '${dir}' (${files.length} images)`);
          try {
            return await platform().readFile(f);
          } catch (e) {
            throw new ShearsError(`cannot read '${f}': ${errorCode(e)}`);
          }
        }),
      );
      return bytes.map((b, k) => ({ kind: 'image' as const, image: decodeImage(new Uint8Array(b.buffer, b.byteOffset, b.byteLength), files[indices[k]!]!) }));
    },
    itemName: (i) => files[i] ?? `${dir}[${i}]`,
  };
  if (classes) return { ...src, classes };
  return src;
}
