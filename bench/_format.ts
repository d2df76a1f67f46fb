// Copyright the upcase authors. MIT license.
/**
 * Numbers as the tables and the progress lines show them.
 *
 * @module
 */

const numberFormats = new Map<number, Intl.NumberFormat>();

/**
 * A number with thousands separators and a fixed number of decimals.
 *
 * @param value The number.
 * @param digits Decimals.
 * @returns The text; "–" for undefined, NaN or infinite.
 */
export function fmt(value: number | undefined, digits = 0): string {
  if (value === undefined || !Number.isFinite(value)) return "–";
  let f = numberFormats.get(digits);
  if (!f) {
    f = new Intl.NumberFormat("en-US", {
      minimumFractionDigits: digits,
      maximumFractionDigits: digits,
    });
    numberFormats.set(digits, f);
  }
  return f.format(value);
}

/**
 * One number over another.
 *
 * @param value The number.
 * @param ref The one it is compared to.
 * @returns The ratio; NaN when either is missing or `ref` is 0.
 */
export function ratioOf(
  value: number | undefined,
  ref: number | undefined,
): number {
  if (value === undefined || ref === undefined || ref === 0) return NaN;
  return value / ref;
}

/**
 * A ratio as "0.84×", with fewer decimals as it grows.
 *
 * @param r The ratio.
 * @returns The text; "–" when it is not finite.
 */
export function fmtRatio(r: number): string {
  return Number.isFinite(r) ? `${fmt(r, r < 10 ? 2 : r < 100 ? 1 : 0)}×` : "–";
}

/**
 * A share as a whole percentage.
 *
 * @param share The share (1 is 100%).
 * @returns The text; "–" when it is missing.
 */
export function percent(share: number | undefined): string {
  return share === undefined || !Number.isFinite(share)
    ? "–"
    : `${fmt(Math.round(share * 100) || 0)}%`;
}
