// Copyright the upcase authors. MIT license.
/**
 * Faults the server injects on demand, as the repeatable command-line flag
 * `--fault KIND[:KEY=VALUE,...]` spells them: the typed {@linkcode Fault}, its
 * parser, its canonical text and its log line. Pure: nothing here sleeps,
 * reads or writes. `_fault_plan.ts` decides which faults hit which connection.
 *
 * | kind           | keys (required first)        | what it does                                 |
 * | -------------- | ---------------------------- | -------------------------------------------- |
 * | `latency`      | `delay`, `jitter=0ms`        | waits delay ± jitter before each reply write |
 * | `bandwidth`    | `rate`                       | sends the reply at most `rate` bytes/s       |
 * | `slow-read`    | `rate`                       | reads the request at most `rate` bytes/s     |
 * | `slice`        | `min`, `max`, `gap=0ms`      | writes min to max bytes at a time, gap apart |
 * | `stall`        | `after=0` or `at`            | stops sending (and reading) from that point  |
 * | `close`        | `after=0` or `at`            | closes the connection at that point          |
 * | `reset`        | `after=0` or `at`            | resets (RST) the connection at that point    |
 * | `slow-close`   | `delay`                      | waits that long before closing               |
 * | `corrupt`      | `every`, `skip=0`            | flips one bit in every `every` reply bytes   |
 * | `accept-pause` | `for`, `every` (else once)   | stops accepting for a while                  |
 *
 * Every kind but `accept-pause` applies per connection and also takes
 * `p=PROBABILITY` (from 0 to 1, default 1) and `from=CIDR` (one IPv4 or IPv6
 * range; repeat the fault for more). Durations are written with `ms` or `s`
 * (`50ms`, `1.5s`) and held in whole milliseconds, at most one hour; sizes
 * are bytes with an optional binary `K` or `M` (`64K` is 65536). "At that
 * point" is `after=N` reply bytes or `at=D` after the connection is served.
 *
 * @module
 */

import { parseCidrs } from "./_cidr.ts";

/** The name of a fault, as `--fault` spells it. */
export type FaultKind =
  | "latency"
  | "bandwidth"
  | "slow-read"
  | "slice"
  | "stall"
  | "close"
  | "reset"
  | "slow-close"
  | "corrupt"
  | "accept-pause";

/** Every {@linkcode FaultKind}, in the order messages list them. */
export const FAULT_KINDS: readonly FaultKind[] = Object.freeze([
  "latency",
  "bandwidth",
  "slow-read",
  "slice",
  "stall",
  "close",
  "reset",
  "slow-close",
  "corrupt",
  "accept-pause",
]);

/** The longest duration a fault accepts, in milliseconds: one hour. */
export const MAX_FAULT_DURATION = 3_600_000;

/** What every per-connection fault carries: which connections it hits. */
export interface ConnectionFaultBase {
  /** The chance, from 0 to 1, that it hits a given connection. */
  p: number;
  /** One CIDR range (`10.0.0.0/8`, `::1/128`) the client must be in. */
  from?: string;
}

/**
 * Where a {@linkcode StallFault}, {@linkcode CloseFault} or
 * {@linkcode ResetFault} strikes: exactly one of the two.
 */
export type FaultPoint =
  /** Once this many reply bytes have been sent. */
  | { after: number; at?: undefined }
  /** This many milliseconds after the connection is served. */
  | { at: number; after?: undefined };

/** `latency`: wait `delay` ± `jitter` ms before each write of the reply. */
export interface LatencyFault extends ConnectionFaultBase {
  /** The kind of fault. */
  kind: "latency";
  /** Milliseconds. */
  delay: number;
  /** Milliseconds either side of `delay`; at most `delay`. */
  jitter: number;
}

/** `bandwidth`: send the reply at most `rate` bytes per second. */
export interface BandwidthFault extends ConnectionFaultBase {
  /** The kind of fault. */
  kind: "bandwidth";
  /** Bytes per second, at least 1. */
  rate: number;
}

/** `slow-read`: read the request at most `rate` bytes per second. */
export interface SlowReadFault extends ConnectionFaultBase {
  /** The kind of fault. */
  kind: "slow-read";
  /** Bytes per second, at least 1. */
  rate: number;
}

/** `slice`: write the reply `min` to `max` bytes at a time, `gap` ms apart. */
export interface SliceFault extends ConnectionFaultBase {
  /** The kind of fault. */
  kind: "slice";
  /** Bytes, at least 1. */
  min: number;
  /** Bytes, at least `min`. */
  max: number;
  /** Milliseconds between slices. */
  gap: number;
}

/** `stall`: stop sending and reading at the point, holding the socket open. */
export type StallFault = ConnectionFaultBase & { kind: "stall" } & FaultPoint;

/** `close`: close the connection at the point (a FIN). */
export type CloseFault = ConnectionFaultBase & { kind: "close" } & FaultPoint;

/** `reset`: reset the connection at the point (an RST). */
export type ResetFault = ConnectionFaultBase & { kind: "reset" } & FaultPoint;

/** `slow-close`: wait `delay` ms before closing a finished connection. */
export interface SlowCloseFault extends ConnectionFaultBase {
  /** The kind of fault. */
  kind: "slow-close";
  /** Milliseconds. */
  delay: number;
}

/** `corrupt`: flip one bit in every `every` reply bytes after the first `skip`. */
export interface CorruptFault extends ConnectionFaultBase {
  /** The kind of fault. */
  kind: "corrupt";
  /** Bytes, at least 1. */
  every: number;
  /** Bytes left intact at the start of the reply. */
  skip: number;
}

/** `accept-pause`: the listener stops accepting for `for` ms, once or `every` ms. */
export interface AcceptPauseFault {
  /** The kind of fault. */
  kind: "accept-pause";
  /** Milliseconds, at least 1. */
  for: number;
  /** Milliseconds from the start of one pause to the next, more than `for`; absent: once. */
  every?: number;
}

/** A fault that applies to single connections: all but `accept-pause`. */
export type ConnectionFault =
  | LatencyFault
  | BandwidthFault
  | SlowReadFault
  | SliceFault
  | StallFault
  | CloseFault
  | ResetFault
  | SlowCloseFault
  | CorruptFault;

/** One `--fault`, typed: durations in milliseconds, sizes in bytes. */
export type Fault = ConnectionFault | AcceptPauseFault;

/** A `--fault` spec or a {@linkcode Fault} that is not valid; the message is one line. */
export class FaultSpecError extends Error {
  /**
   * Makes the error.
   *
   * @param message One line: what is wrong, with the bad part quoted.
   */
  constructor(message: string) {
    super(message);
    this.name = "FaultSpecError";
  }
}

/** How a key's value is written and checked. */
type ValueType = "duration" | "size" | "probability" | "range";

interface KeyRule {
  type: ValueType;
  /** A value to show in "missing key" messages. */
  example: string;
  required?: true;
  /** The value when the key is absent; omitted from the canonical text. */
  default?: number;
  /** The least value allowed (durations and sizes); 0 when absent. */
  min?: number;
}

const PROBABILITY: KeyRule = {
  type: "probability",
  example: "0.5",
  default: 1,
};
const RANGE: KeyRule = { type: "range", example: "10.0.0.0/8" };
const POINT_KEYS: Record<string, KeyRule> = {
  after: { type: "size", example: "100" },
  at: { type: "duration", example: "500ms" },
};

/** Each kind's keys, in canonical order; p and from come last. */
const RULES: Record<FaultKind, Record<string, KeyRule>> = {
  "latency": {
    delay: { type: "duration", example: "50ms", required: true },
    jitter: { type: "duration", example: "10ms", default: 0 },
  },
  "bandwidth": {
    rate: { type: "size", example: "64K", required: true, min: 1 },
  },
  "slow-read": {
    rate: { type: "size", example: "1K", required: true, min: 1 },
  },
  "slice": {
    min: { type: "size", example: "1", required: true, min: 1 },
    max: { type: "size", example: "4", required: true, min: 1 },
    gap: { type: "duration", example: "5ms", default: 0 },
  },
  "stall": POINT_KEYS,
  "close": POINT_KEYS,
  "reset": POINT_KEYS,
  "slow-close": {
    delay: { type: "duration", example: "500ms", required: true },
  },
  "corrupt": {
    every: { type: "size", example: "1000", required: true, min: 1 },
    skip: { type: "size", example: "16", default: 0 },
  },
  "accept-pause": {
    for: { type: "duration", example: "2s", required: true, min: 1 },
    every: { type: "duration", example: "10s", min: 1 },
  },
};

const KIND_LIST = FAULT_KINDS.join(", ");
const KIB = 1024;
const MIB = 1024 * 1024;

/** A bad part of a fault, before the caller says which fault. */
class BadPart extends Error {}

/** A value read from text or an object, with how to show it in messages. */
interface Given {
  value: number | string;
  shown: string;
}

/**
 * Parses one `--fault KIND[:KEY=VALUE,...]` value.
 *
 * @param spec The flag's value, such as `latency:delay=50ms,jitter=10ms`.
 * @returns The fault, with every default filled in.
 * @throws {FaultSpecError} One line, `Invalid --fault "SPEC": DETAIL`, for an
 * unknown kind or key, a duplicate or missing key, a malformed or
 * out-of-range value, both `after` and `at`, or `p`/`from` on `accept-pause`.
 *
 * @example Usage
 * ```ts
 * import { parseFault } from "./_fault_spec.ts";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(parseFault("latency:delay=50ms,jitter=10ms,p=0.3"), {
 *   kind: "latency",
 *   delay: 50,
 *   jitter: 10,
 *   p: 0.3,
 * });
 * assertEquals(parseFault("reset:at=1.5s"), { kind: "reset", at: 1500, p: 1 });
 * ```
 */
export function parseFault(spec: string): Fault {
  try {
    const colon = spec.indexOf(":");
    const kind = knownKind(colon === -1 ? spec : spec.slice(0, colon));
    const rules = allRules(kind);
    const given = new Map<string, Given>();
    if (colon !== -1) {
      for (const item of spec.slice(colon + 1).split(",")) {
        const eq = item.indexOf("=");
        if (eq === -1) {
          throw new BadPart(
            `${JSON.stringify(item)} is not KEY=VALUE (like ${
              exampleItem(kind)
            })`,
          );
        }
        const key = item.slice(0, eq);
        const text = item.slice(eq + 1);
        const rule = ruleOf(kind, rules, key);
        if (given.has(key)) {
          throw new BadPart(`duplicate key ${JSON.stringify(key)}`);
        }
        given.set(key, {
          value: parseValue(key, rule.type, text),
          shown: JSON.stringify(text),
        });
      }
    }
    return buildFault(kind, rules, given);
  } catch (err: unknown) {
    if (!(err instanceof BadPart)) throw err;
    throw new FaultSpecError(
      `Invalid --fault ${JSON.stringify(spec)}: ${err.message}`,
    );
  }
}

/**
 * Checks a {@linkcode Fault} built in code with the rules
 * {@linkcode parseFault} applies, and fills in absent defaults (`p` 1,
 * `jitter`, `gap` and `skip` 0, `after` 0 without a point).
 *
 * @param fault The fault.
 * @returns A new, complete fault equal to what `parseFault` gives for it.
 * @throws {FaultSpecError} One line, `Invalid KIND fault: FIELD: DETAIL` (or
 * `Invalid fault: ...` when the kind itself is wrong).
 *
 * @example Usage
 * ```ts
 * import { FaultSpecError, validateFault } from "./_fault_spec.ts";
 * import { assertEquals, assertThrows } from "@std/assert";
 *
 * assertEquals(validateFault({ kind: "stall", after: 10, p: 1 }), {
 *   kind: "stall",
 *   after: 10,
 *   p: 1,
 * });
 * assertThrows(
 *   () => validateFault({ kind: "bandwidth", rate: 0, p: 1 }),
 *   FaultSpecError,
 *   "Invalid bandwidth fault: rate: 0 is less than 1",
 * );
 * ```
 */
export function validateFault(fault: Fault): Fault {
  const object: unknown = fault;
  const kind = typeof object === "object" && object !== null
    ? (object as Record<string, unknown>).kind
    : undefined;
  try {
    if (typeof object !== "object" || object === null) {
      throw new BadPart(`${show(object)} is not an object`);
    }
    if (kind === undefined) {
      throw new BadPart(`missing key "kind" (${KIND_LIST})`);
    }
    if (typeof kind !== "string") {
      throw new BadPart(`unknown kind ${show(kind)} (${KIND_LIST})`);
    }
    const rules = allRules(knownKind(kind));
    const given = new Map<string, Given>();
    for (const [key, value] of Object.entries(object as object)) {
      if (key === "kind" || value === undefined) continue;
      const rule = ruleOf(kind, rules, key);
      const text = rule.type === "range";
      if (text ? typeof value !== "string" : typeof value !== "number") {
        throw new BadPart(
          `${key}: ${show(value)} is not a ${text ? "string" : "number"}`,
        );
      }
      given.set(key, { value: value as number | string, shown: show(value) });
    }
    return buildFault(knownKind(kind), rules, given);
  } catch (err: unknown) {
    if (!(err instanceof BadPart)) throw err;
    const what = typeof kind === "string" && isFaultKind(kind)
      ? `${kind} fault`
      : "fault";
    throw new FaultSpecError(`Invalid ${what}: ${err.message}`);
  }
}

/**
 * The canonical `--fault` text of a fault: keys in a fixed order, defaults
 * (`p=1`, `jitter=0ms`, `gap=0ms`, `skip=0`, `after=0`) left out, sizes in
 * `M` or `K` when exact, durations in `s` when exact, else `ms`.
 * {@linkcode parseFault} reads it back to an equal fault.
 *
 * @param fault The fault.
 * @returns The text, such as `latency:delay=50ms,jitter=10ms`.
 * @throws {FaultSpecError} When the fault is not valid.
 *
 * @example Usage
 * ```ts
 * import { formatFault, parseFault } from "./_fault_spec.ts";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(
 *   formatFault({ kind: "bandwidth", rate: 65536, p: 0.5, from: "::1/128" }),
 *   "bandwidth:rate=64K,p=0.5,from=::1/128",
 * );
 * assertEquals(formatFault(parseFault("slice:min=1,max=4,gap=0.005s")),
 *   "slice:min=1,max=4,gap=5ms");
 * ```
 */
export function formatFault(fault: Fault): string {
  const checked = validateFault(fault) as unknown as Record<string, unknown>;
  const kind = checked.kind as FaultKind;
  const items: string[] = [];
  for (const [key, rule] of Object.entries(allRules(kind))) {
    const value = checked[key];
    if (value === undefined || value === rule.default) continue;
    if (key === "after" && value === 0) continue;
    items.push(`${key}=${formatValue(rule.type, value as number | string)}`);
  }
  return items.length === 0 ? kind : `${kind}:${items.join(",")}`;
}

/**
 * A fault in words, for a log line: `latency 50 ms ± 10 ms`, `reset after
 * 100 B`, `slice 1-4 B, 5 ms apart`, `bandwidth 64 KiB/s`, `accept pause 2 s
 * every 10 s`; then `, p=0.3` and `, from 10.0.0.0/8` when set.
 *
 * @param fault The fault.
 * @returns One line.
 * @throws {FaultSpecError} When the fault is not valid.
 *
 * @example Usage
 * ```ts
 * import { describeFault, parseFault } from "./_fault_spec.ts";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(
 *   describeFault(parseFault("corrupt:every=1000,skip=16")),
 *   "corrupt 1 bit in 1000 B after 16 B",
 * );
 * assertEquals(
 *   describeFault(parseFault("close:at=2s,p=0.3,from=10.0.0.0/8")),
 *   "close at 2 s, p=0.3, from 10.0.0.0/8",
 * );
 * ```
 */
export function describeFault(fault: Fault): string {
  const f = validateFault(fault);
  if (f.kind === "accept-pause") {
    return `accept pause ${words(f.for)} ${
      f.every === undefined ? "once" : `every ${words(f.every)}`
    }`;
  }
  let text: string;
  switch (f.kind) {
    case "latency":
      text = `latency ${words(f.delay)}${
        f.jitter === 0 ? "" : ` ± ${words(f.jitter)}`
      }`;
      break;
    case "bandwidth":
      text = `bandwidth ${bytes(f.rate)}/s`;
      break;
    case "slow-read":
      text = `slow read ${bytes(f.rate)}/s`;
      break;
    case "slice": {
      const sizes = f.min === f.max
        ? bytes(f.min)
        : bytes(f.min).endsWith(" B") && bytes(f.max).endsWith(" B")
        ? `${f.min}-${f.max} B`
        : `${bytes(f.min)}-${bytes(f.max)}`;
      text = `slice ${sizes}${f.gap === 0 ? "" : `, ${words(f.gap)} apart`}`;
      break;
    }
    case "stall":
    case "close":
    case "reset":
      text = `${f.kind} ${
        f.at === undefined ? `after ${bytes(f.after)}` : `at ${words(f.at)}`
      }`;
      break;
    case "slow-close":
      text = `slow close ${words(f.delay)}`;
      break;
    case "corrupt":
      text = `corrupt 1 bit in ${bytes(f.every)}${
        f.skip === 0 ? "" : ` after ${bytes(f.skip)}`
      }`;
      break;
  }
  if (f.p !== 1) text += `, p=${f.p}`;
  if (f.from !== undefined) text += `, from ${f.from}`;
  return text;
}

function isFaultKind(kind: string): kind is FaultKind {
  return (FAULT_KINDS as readonly string[]).includes(kind);
}

function knownKind(kind: string): FaultKind {
  if (!isFaultKind(kind)) {
    throw new BadPart(
      kind === ""
        ? `no kind given (${KIND_LIST})`
        : `unknown kind ${JSON.stringify(kind)} (${KIND_LIST})`,
    );
  }
  return kind;
}

/** A kind's keys, p and from included where they apply. */
function allRules(kind: FaultKind): Record<string, KeyRule> {
  return kind === "accept-pause"
    ? RULES[kind]
    : { ...RULES[kind], p: PROBABILITY, from: RANGE };
}

function ruleOf(
  kind: string,
  rules: Record<string, KeyRule>,
  key: string,
): KeyRule {
  const rule = Object.hasOwn(rules, key) ? rules[key] : undefined;
  if (rule !== undefined) return rule;
  if (kind === "accept-pause" && (key === "p" || key === "from")) {
    throw new BadPart(
      `${key}: accept-pause pauses the whole listener, so it takes no p or from`,
    );
  }
  throw new BadPart(
    `unknown key ${JSON.stringify(key)} for ${kind} (${
      Object.keys(rules).join(", ")
    })`,
  );
}

function exampleItem(kind: FaultKind): string {
  const [key, rule] = Object.entries(RULES[kind])[0]!;
  return `${key}=${rule.example}`;
}

/** A value's text to a number (or the CIDR text); syntax only. */
function parseValue(
  key: string,
  type: ValueType,
  text: string,
): number | string {
  const quoted = JSON.stringify(text);
  switch (type) {
    case "duration": {
      const match = /^(\d+(?:\.\d+)?)(ms|s)$/.exec(text);
      if (match === null) {
        throw new BadPart(
          /^\d+(?:\.\d+)?$/.test(text)
            ? `${key}: ${quoted} needs a unit, ms or s (like 50ms or 2s)`
            : `${key}: ${quoted} is not a duration (like 50ms or 2s)`,
        );
      }
      const [whole = "", fraction = ""] = match[1]!.split(".");
      if (match[2] === "ms") return Number(`${whole}.${fraction || "0"}`);
      // Shift the decimal point by hand: 1.001 * 1000 is not 1001.
      return Number(
        `${whole}${fraction.padEnd(3, "0").slice(0, 3)}.${
          fraction.slice(3) || "0"
        }`,
      );
    }
    case "size": {
      const match = /^(\d+)([KM]?)$/.exec(text);
      if (match === null) {
        throw new BadPart(
          `${key}: ${quoted} is not a size in bytes (like 1000, 64K or 1M)`,
        );
      }
      const unit = match[2] === "M" ? MIB : match[2] === "K" ? KIB : 1;
      return Number(match[1]) * unit;
    }
    case "probability":
      return /^(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/.test(text)
        ? Number(text)
        : NaN;
    case "range":
      return text;
  }
}

/** Checks the values against their kind's rules and builds the fault. */
function buildFault(
  kind: FaultKind,
  rules: Record<string, KeyRule>,
  given: Map<string, Given>,
): Fault {
  for (const [key, { value, shown }] of given) {
    checkValue(key, rules[key]!, value, shown);
  }
  if (given.has("after") && given.has("at")) {
    throw new BadPart("after and at: give one, not both");
  }
  const fault: Record<string, number | string> = { kind };
  for (const [key, rule] of Object.entries(rules)) {
    let value = given.get(key)?.value ?? rule.default;
    // A point defaults to after=0 unless at= is given.
    if (key === "after" && value === undefined && !given.has("at")) value = 0;
    if (rule.required && value === undefined) {
      throw new BadPart(
        `missing key ${JSON.stringify(key)} (like ${key}=${rule.example})`,
      );
    }
    if (value !== undefined) fault[key] = value;
  }
  const number = (key: string) => fault[key] as number;
  const shown = (key: string) => given.get(key)!.shown;
  if (kind === "latency" && number("jitter") > number("delay")) {
    throw new BadPart(
      `jitter: ${shown("jitter")} is more than delay (${
        formatValue("duration", number("delay"))
      })`,
    );
  }
  if (kind === "slice" && number("max") < number("min")) {
    throw new BadPart(
      `max: ${shown("max")} is less than min (${
        formatValue("size", number("min"))
      })`,
    );
  }
  if (
    kind === "accept-pause" && given.has("every") &&
    number("every") <= number("for")
  ) {
    throw new BadPart(
      `every: ${shown("every")} is not longer than for (${
        formatValue("duration", number("for"))
      })`,
    );
  }
  return fault as unknown as Fault;
}

/** The range checks, shared by text and objects. */
function checkValue(
  key: string,
  rule: KeyRule,
  value: number | string,
  shown: string,
): void {
  if (rule.type === "range") {
    let single = false;
    try {
      single = !/[\s,]/.test(String(value)) &&
        parseCidrs(String(value)).length === 1;
    } catch (err: unknown) {
      if (!(err instanceof RangeError)) throw err;
    }
    if (!single) {
      throw new BadPart(
        `${key}: ${shown} is not an address range (like 10.0.0.0/8 or ::1/128)`,
      );
    }
    return;
  }
  const n = value as number;
  if (rule.type === "probability") {
    if (!(n >= 0 && n <= 1)) {
      throw new BadPart(`${key}: ${shown} is not a probability from 0 to 1`);
    }
    return;
  }
  const min = rule.min ?? 0;
  const unit = rule.type === "duration" ? " ms" : "";
  if (Number.isNaN(n)) throw new BadPart(`${key}: ${shown} is not a number`);
  if (n < min) {
    throw new BadPart(
      `${key}: ${shown} is ${
        min === 0 ? "negative" : `less than ${min}${unit}`
      }`,
    );
  }
  if (rule.type === "duration") {
    if (n > MAX_FAULT_DURATION) {
      throw new BadPart(`${key}: ${shown} is longer than 1 hour`);
    }
    if (!Number.isInteger(n)) {
      throw new BadPart(
        `${key}: ${shown} is not a whole number of milliseconds`,
      );
    }
    return;
  }
  if (
    !Number.isFinite(n) || (Number.isInteger(n) && !Number.isSafeInteger(n))
  ) {
    throw new BadPart(`${key}: ${shown} is too large`);
  }
  if (!Number.isInteger(n)) {
    throw new BadPart(`${key}: ${shown} is not a whole number of bytes`);
  }
}

function formatValue(type: ValueType, value: number | string): string {
  if (typeof value === "string") return value;
  switch (type) {
    case "duration":
      return value !== 0 && value % 1000 === 0
        ? `${value / 1000}s`
        : `${value}ms`;
    case "size":
      return value !== 0 && value % MIB === 0
        ? `${value / MIB}M`
        : value !== 0 && value % KIB === 0
        ? `${value / KIB}K`
        : `${value}`;
    default:
      return String(value);
  }
}

/** Milliseconds in words: `500 ms`, `2 s`, `1.5 s`. */
function words(ms: number): string {
  return ms >= 1000 ? `${ms / 1000} s` : `${ms} ms`;
}

/** Bytes in words: `1000 B`, `64 KiB`, `1 MiB`; binary units only when exact. */
function bytes(n: number): string {
  if (n !== 0 && n % MIB === 0) return `${n / MIB} MiB`;
  if (n !== 0 && n % KIB === 0) return `${n / KIB} KiB`;
  return `${n} B`;
}

/** A value as messages quote it: strings in JSON, numbers as they print. */
function show(value: unknown): string {
  return typeof value === "string" ? JSON.stringify(value) : String(value);
}
