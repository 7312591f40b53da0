/** Numbers as people read them: 1.23 M, 4.5 MiB, 12.3%. */

/** 1234567 -> '1.23 M'. */
export function human(n: number, unit = ''): string {
  const abs = Math.abs(n);
  const [div, suffix] = abs >= 1e12 ? [1e12, 'T'] : abs >= 1e9 ? [1e9, 'G'] : abs >= 1e6 ? [1e6, 'M'] : abs >= 1e3 ? [1e3, 'k'] : [1, ''];
  const v = n / div;
  const s = div === 1 ? String(Math.round(v * 100) / 100) : v.toFixed(2);
  return unit || suffix ? `${s} ${suffix}${unit}`.trimEnd() : s;
}

export function bytes(n: number): string {
  const abs = Math.abs(n);
  if (abs >= 1024 ** 3) return `${(n / 1024 ** 3).toFixed(2)} GiB`;
  if (abs >= 1024 ** 2) return `${(n / 1024 ** 2).toFixed(2)} MiB`;
  if (abs >= 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${n} B`;
}

export function percent(x: number, digits = 1): string {
  return `${(x * 100).toFixed(digits)}%`;
}
