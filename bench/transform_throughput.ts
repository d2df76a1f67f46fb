#!/usr/bin/env -S deno run
// Copyright the upcase authors. MIT license.
/**
 * GB/s of the transform: the straightforward per-byte loop against the
 * shipped `toUpperInPlace`, by default on 64 KiB (the server's large read
 * buffer). Needs no permissions.
 *
 * ```sh
 * deno run bench/transform_throughput.ts [--size=65536] [--json]
 * ```
 *
 * Every pass first restores the input with a copy (a second pass over
 * upper-cased bytes would measure something easier); the copy alone is timed
 * too and taken off, so GB/s is the transform's own. Each contender is timed
 * in several interleaved rounds of at least 100 ms; the fastest round counts.
 * 1 GB = 10^9 bytes.
 *
 * @module
 */

import { toUpperInPlace } from "../src/transform.ts";
import { naiveToUpperInPlace, sampleBytes } from "./_naive_transform.ts";

/** The result of {@linkcode measureTransformThroughput}. */
export interface TransformThroughput {
  /** Bytes per pass. */
  size: number;
  /** Nanoseconds per pass of the copy that restores the input. */
  copyNs: number;
  /** Nanoseconds per pass of the naive loop, copy taken off. */
  naiveNs: number;
  /** Nanoseconds per pass of `toUpperInPlace`, copy taken off. */
  shippedNs: number;
  /** 10^9 bytes per second of the naive loop. */
  naiveGBps: number;
  /** 10^9 bytes per second of `toUpperInPlace`. */
  shippedGBps: number;
}

/** Options for {@linkcode measureTransformThroughput}. */
export interface MeasureOptions {
  /**
   * Interleaved rounds per contender.
   *
   * @default {5}
   */
  rounds?: number;
  /**
   * Shortest round, in milliseconds.
   *
   * @default {100}
   */
  roundMs?: number;
}

type Pass = (work: Uint8Array, input: Uint8Array, passes: number) => void;

// One loop per contender, so that each call site sees one function.
const COPY: Pass = (work, input, passes) => {
  for (let i = 0; i < passes; i++) work.set(input);
};
const NAIVE: Pass = (work, input, passes) => {
  for (let i = 0; i < passes; i++) {
    work.set(input);
    naiveToUpperInPlace(work);
  }
};
const SHIPPED: Pass = (work, input, passes) => {
  for (let i = 0; i < passes; i++) {
    work.set(input);
    toUpperInPlace(work);
  }
};

/** Nanoseconds per pass of the fastest round of at least `roundMs`. */
function timeRound(
  pass: Pass,
  work: Uint8Array,
  input: Uint8Array,
  roundMs: number,
): number {
  let passes = 1;
  while (true) {
    const t0 = performance.now();
    pass(work, input, passes);
    const ms = performance.now() - t0;
    if (ms >= roundMs) return (ms * 1e6) / passes;
    passes = ms < roundMs / 8 ? passes * 8 : Math.ceil(passes * 1.5);
  }
}

/**
 * Measures both contenders on `size` bytes of sample input.
 *
 * @param size Bytes per pass.
 * @param options Rounds and their length.
 * @returns Nanoseconds per pass and GB/s of each.
 *
 * @example Usage
 * ```ts
 * import { measureTransformThroughput } from "./transform_throughput.ts";
 * import { assert } from "@std/assert";
 *
 * const result = measureTransformThroughput(1024, { rounds: 1, roundMs: 5 });
 * assert(result.shippedGBps > 0);
 * ```
 */
export function measureTransformThroughput(
  size: number,
  options: MeasureOptions = {},
): TransformThroughput {
  const { rounds = 5, roundMs = 100 } = options;
  const input = sampleBytes(size);
  const work = new Uint8Array(size);
  const best = { copy: Infinity, naive: Infinity, shipped: Infinity };
  for (let round = 0; round < rounds; round++) {
    best.copy = Math.min(best.copy, timeRound(COPY, work, input, roundMs));
    best.naive = Math.min(best.naive, timeRound(NAIVE, work, input, roundMs));
    best.shipped = Math.min(
      best.shipped,
      timeRound(SHIPPED, work, input, roundMs),
    );
  }
  const naiveNs = Math.max(best.naive - best.copy, 1e-3);
  const shippedNs = Math.max(best.shipped - best.copy, 1e-3);
  return {
    size,
    copyNs: best.copy,
    naiveNs,
    shippedNs,
    naiveGBps: size / naiveNs,
    shippedGBps: size / shippedNs,
  };
}

/**
 * One line per contender, for people.
 *
 * @param result What {@linkcode measureTransformThroughput} returned.
 * @returns Three lines of text.
 *
 * @example Usage
 * ```ts
 * import { formatTransformThroughput } from "./transform_throughput.ts";
 * import { assertStringIncludes } from "@std/assert";
 *
 * const text = formatTransformThroughput({
 *   size: 65536,
 *   copyNs: 2000,
 *   naiveNs: 200000,
 *   shippedNs: 10000,
 *   naiveGBps: 0.33,
 *   shippedGBps: 6.55,
 * });
 * assertStringIncludes(text, "6.55 GB/s");
 * ```
 */
export function formatTransformThroughput(result: TransformThroughput): string {
  const us = (ns: number) =>
    ns < 1000 ? `${ns.toFixed(1)} ns` : `${(ns / 1000).toFixed(2)} µs`;
  const ratio = result.naiveNs / result.shippedNs;
  return [
    `transform of ${result.size} bytes (input restored by a copy of ${
      us(result.copyNs)
    } each pass, taken off):`,
    `  naive per-byte loop  ${result.naiveGBps.toFixed(2)} GB/s  (${
      us(result.naiveNs)
    })`,
    `  toUpperInPlace       ${result.shippedGBps.toFixed(2)} GB/s  (${
      us(result.shippedNs)
    }, ${ratio.toFixed(2)}× the naive loop)`,
  ].join("\n");
}

if (import.meta.main) {
  let size = 64 * 1024;
  let json = false;
  for (const arg of Deno.args) {
    const match = /^--size=(\d+)$/.exec(arg);
    if (match && Number(match[1]) > 0) size = Number(match[1]);
    else if (arg === "--json") json = true;
    else {
      console.error(
        `Unknown argument: "${arg}" (usage: transform_throughput.ts [--size=BYTES] [--json])`,
      );
      Deno.exit(2);
    }
  }
  const result = measureTransformThroughput(size);
  console.log(
    json ? JSON.stringify(result) : formatTransformThroughput(result),
  );
}
