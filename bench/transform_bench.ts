// Copyright the upcase authors. MIT license.
/**
 * `deno bench bench/transform_bench.ts`: the shipped transforms against the
 * straightforward per-byte loop (the baseline of each group), from 1 B to
 * 1 MiB: `toUpperInPlace` (JavaScript, 32 bits at a time) and the SIMD
 * WebAssembly path the server uses on the memory it reads into. Needs no
 * permissions and runs in well under a minute.
 *
 * Each iteration first restores the input (`work.set(input)`, a memcpy) and
 * then transforms it, since a second pass over upper-cased bytes would
 * measure something easier. Both contenders pay the same copy; for GB/s
 * without it, run `deno run bench/transform_throughput.ts`.
 *
 * @module
 */

import { toUpperInPlace } from "../src/transform.ts";
import { SimdBuffers } from "../src/_simd.ts";
import { naiveToUpperInPlace, sampleBytes } from "./_naive_transform.ts";

const SIZES: readonly [number, string][] = [
  [1, "1 B"],
  [16, "16 B"],
  [64, "64 B"],
  [1024, "1 KiB"],
  [64 * 1024, "64 KiB"],
  [1024 * 1024, "1 MiB"],
];

/** About 64 MiB per benchmark, from 2,000 to 500,000 iterations. */
function iterations(size: number): number {
  return Math.min(500_000, Math.max(2_000, Math.round(2 ** 26 / size)));
}

// The server's streaming path: buffers in WebAssembly memory, upper-cased in
// place there with SIMD (serve.ts reads from the socket straight into them).
const simd = SimdBuffers.create(1024 * 1024, 1);
const simdBuffer = simd?.take();

for (const [size, label] of SIZES) {
  const input = sampleBytes(size);
  const work = new Uint8Array(size);
  const n = iterations(size);
  const warmup = Math.max(200, Math.round(n / 10));
  Deno.bench({
    name: `naive loop, ${label}`,
    group: label,
    baseline: true,
    n,
    warmup,
    fn() {
      work.set(input);
      naiveToUpperInPlace(work);
    },
  });
  Deno.bench({
    name: `toUpperInPlace, ${label}`,
    group: label,
    n,
    warmup,
    fn() {
      work.set(input);
      toUpperInPlace(work);
    },
  });
  if (simd && simdBuffer) {
    const view = simdBuffer.subarray(0, size);
    Deno.bench({
      name: `SIMD in WebAssembly memory (server streaming), ${label}`,
      group: label,
      n,
      warmup,
      fn() {
        view.set(input);
        simd.upper(view);
      },
    });
  }
}
