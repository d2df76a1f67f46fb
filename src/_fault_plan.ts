// Copyright the upcase authors. MIT license.
/**
 * Which `--fault`s hit which connection, reproducibly: the same seed and
 * fault list give the same faults to connection k however many workers serve
 * and in whatever order connections arrive, so a failing run can be replayed
 * with `--fault-seed`. Pure: no clocks, no sockets.
 *
 * The draws are counter-based: the chance roll of fault i on connection k is
 * a hash of (seed, k, i), never a step of a shared generator, so no
 * connection's luck depends on another's.
 *
 * @module
 */

import { type Cidr, inCidrs, parseCidrs } from "./_cidr.ts";
import {
  type AcceptPauseFault,
  type ConnectionFault,
  type Fault,
  validateFault,
} from "./_fault_spec.ts";

/** The faults chosen for one connection. */
export interface ConnectionFaults {
  /** The faults that hit it, in the order given; never `accept-pause`. */
  faults: ConnectionFault[];
  /**
   * The connection's own seeded sequence in [0, 1), for per-chunk choices
   * (jitter, slice sizes): the same for the same seed and connection number.
   */
  random(): number;
}

const TWO_POW_32 = 2 ** 32;
/** Keeps the chance rolls and the per-connection streams apart. */
const ROLL_DOMAIN = 0x524f4c4c;
const STREAM_DOMAIN = 0x5354524d;

/**
 * A small seeded generator (sfc32, seeded by hashing), for reproducible
 * choices. Distinct seeds or streams give unrelated sequences.
 *
 * @param seed An unsigned 32-bit integer.
 * @param stream Which of the seed's sequences: a non-negative safe integer.
 * @returns A function giving the next number in [0, 1) at each call.
 *
 * @example Usage
 * ```ts
 * import { seededRandom } from "./_fault_plan.ts";
 * import { assertEquals } from "@std/assert";
 *
 * const a = seededRandom(42, 7);
 * const b = seededRandom(42, 7);
 * assertEquals([a(), a(), a()], [b(), b(), b()]);
 * ```
 */
export function seededRandom(seed: number, stream = 0): () => number {
  const words = [STREAM_DOMAIN, seed, stream >>> 0, high32(stream)];
  let a = hash32(words, 1);
  let b = hash32(words, 2);
  let c = hash32(words, 3);
  let d = 1;
  const next = () => {
    const t = (((a + b) | 0) + d) | 0;
    d = (d + 1) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) | 0;
    return (t >>> 0) / TWO_POW_32;
  };
  for (let i = 0; i < 12; i++) next();
  return next;
}

/**
 * A seed for when none was given: 32 random bits from the system.
 *
 * @returns An unsigned 32-bit integer.
 *
 * @example Usage
 * ```ts
 * import { randomSeed } from "./_fault_plan.ts";
 * import { assert } from "@std/assert";
 *
 * const seed = randomSeed();
 * assert(Number.isInteger(seed) && seed >= 0 && seed < 2 ** 32);
 * ```
 */
export function randomSeed(): number {
  return crypto.getRandomValues(new Uint32Array(1))[0]!;
}

/**
 * The faults that act on the listener rather than on a connection.
 *
 * @param faults The `--fault` list.
 * @returns Its `accept-pause` faults, in order.
 *
 * @example Usage
 * ```ts
 * import { serverFaults } from "./_fault_plan.ts";
 * import { parseFault } from "./_fault_spec.ts";
 * import { assertEquals } from "@std/assert";
 *
 * const faults = ["latency:delay=5ms", "accept-pause:for=2s"].map(parseFault);
 * assertEquals(serverFaults(faults), [{ kind: "accept-pause", for: 2000 }]);
 * ```
 */
export function serverFaults(faults: readonly Fault[]): AcceptPauseFault[] {
  return faults.filter((fault): fault is AcceptPauseFault =>
    fault.kind === "accept-pause"
  );
}

/** One per-connection fault with its place in the list and parsed range. */
interface Entry {
  fault: ConnectionFault;
  index: number;
  ranges: Cidr[] | undefined;
}

/**
 * Decides which faults hit each served connection. Connection k (counted from
 * 1) gets fault i when its client is in the fault's `from` range (if any) and
 * a draw that depends only on the seed, k and i is below the fault's `p`.
 *
 * @example Usage
 * ```ts
 * import { FaultPlan } from "./_fault_plan.ts";
 * import { parseFault } from "./_fault_spec.ts";
 * import { assertEquals } from "@std/assert";
 *
 * const plan = new FaultPlan([
 *   parseFault("reset:after=100,p=0.5"),
 *   parseFault("latency:delay=50ms,from=10.0.0.0/8"),
 * ], 1234);
 * const first = plan.forConnection(7, "10.1.2.3");
 * const again = new FaultPlan(plan.faults, 1234).forConnection(7, "10.1.2.3");
 * assertEquals(first.faults, again.faults);
 * assertEquals(first.random(), again.random());
 * assertEquals(plan.forConnection(7, "192.0.2.1").faults.length <= 1, true);
 * ```
 */
export class FaultPlan {
  readonly #faults: readonly Fault[];
  readonly #entries: readonly Entry[];
  readonly #seed: number;

  /**
   * Validates the faults and keeps them with the seed.
   *
   * @param faults The `--fault` list, in command-line order.
   * @param seed An unsigned 32-bit integer (`--fault-seed`, or
   * {@linkcode randomSeed}).
   * @throws {RangeError} When the seed is not an integer from 0 to 4294967295.
   * @throws {FaultSpecError} When a fault is not valid.
   */
  constructor(faults: readonly Fault[], seed: number) {
    if (!Number.isInteger(seed) || seed < 0 || seed >= TWO_POW_32) {
      throw new RangeError(
        `Invalid fault seed: ${seed} is not an integer from 0 to 4294967295`,
      );
    }
    this.#seed = seed;
    this.#faults = Object.freeze(faults.map(validateFault));
    const entries: Entry[] = [];
    this.#faults.forEach((fault, index) => {
      if (fault.kind === "accept-pause") return;
      const ranges = fault.from === undefined
        ? undefined
        : parseCidrs(fault.from);
      entries.push({ fault, index, ranges });
    });
    this.#entries = entries;
  }

  /** The faults, validated, in the order given. */
  get faults(): readonly Fault[] {
    return this.#faults;
  }

  /** The seed every choice derives from. */
  get seed(): number {
    return this.#seed;
  }

  /**
   * The faults for served connection `k` and its own random sequence. The
   * answer depends only on the seed, the fault list, `k` and `remote`: ask
   * in any order, as often as you like.
   *
   * @param k The connection's number, counted from 1.
   * @param remote The client's IP address as `Deno.NetAddr` has it;
   * undefined for a Unix socket, which no `from` range matches.
   * @returns The faults that hit it and its random sequence.
   * @throws {RangeError} When `k` is not a positive safe integer.
   */
  forConnection(k: number, remote: string | undefined): ConnectionFaults {
    if (!Number.isSafeInteger(k) || k < 1) {
      throw new RangeError(
        `Invalid connection number: ${k} is not a positive integer`,
      );
    }
    const address = remote?.replace(/^\[(.*)\]$/, "$1").replace(/%.*$/, "");
    const faults: ConnectionFault[] = [];
    for (const { fault, index, ranges } of this.#entries) {
      if (
        ranges !== undefined &&
        (address === undefined || !inCidrs(address, ranges))
      ) {
        continue;
      }
      if (roll(this.#seed, k, index) < fault.p) faults.push(fault);
    }
    return { faults, random: seededRandom(this.#seed, k) };
  }
}

/** The chance roll of fault `index` on connection `k`, in [0, 1). */
function roll(seed: number, k: number, index: number): number {
  return hash32([ROLL_DOMAIN, seed, k >>> 0, high32(k), index], 0) /
    TWO_POW_32;
}

/** The bits of a safe integer above the low 32. */
function high32(n: number): number {
  return Math.floor(n / TWO_POW_32) >>> 0;
}

/** A 32-bit hash of 32-bit words, salted: a chain of lowbias32 mixes. */
function hash32(words: readonly number[], salt: number): number {
  let h = mix32(salt ^ 0x2545f491);
  for (const word of words) h = mix32((h + 0x9e3779b9) ^ mix32(word >>> 0));
  return h;
}

/** Chris Wellons' lowbias32: a bijection on 32 bits with strong avalanche. */
function mix32(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x >>> 0;
}
