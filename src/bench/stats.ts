/**
 * What the bench sections share: the figure shape src/bench/run.ts prints, and the order statistics they report.
 */

/** A bench figure (the shape src/bench/run.ts prints). */
export interface BenchFigure {
  name: string;
  baseline?: string;
  baselineMs?: number;
  meshkitMs: number;
  ratio?: number;
  aim?: number;
  note?: string;
}

/**
 * The median of `xs` (the upper one of the two middle values for an even count); NaN when empty. `xs` is not changed.
 * @param xs the samples
 * @returns the median
 * @throws TypeError when xs is not an array.
 */
export function median(xs: readonly number[]): number {
  if (!Array.isArray(xs)) throw new TypeError('"xs" expected an array of numbers');
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
}

/**
 * The `p`-th percentile (nearest rank) of samples already sorted ascending; NaN when empty.
 * @param sorted the samples, sorted ascending
 * @param p the percentile, 0..100
 * @returns the sample at rank ceil(p/100 · n) (clamped to the samples)
 * @throws TypeError when sorted is not an array; RangeError when p is not a number in 0..100.
 */
export function percentile(sorted: readonly number[], p: number): number {
  if (!Array.isArray(sorted)) throw new TypeError('"sorted" expected an array of numbers');
  if (typeof p !== 'number' || !(p >= 0 && p <= 100)) throw new RangeError('"p" expected a number in 0..100');
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? NaN;
}
