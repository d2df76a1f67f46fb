// Copyright the upcase authors. MIT license.
// The --fault spec (parse, canonical text, log line, validation) and the
// seeded plan of which faults hit which connection. No sockets.
import {
  assert,
  assertEquals,
  assertInstanceOf,
  assertNotEquals,
  assertThrows,
} from "@std/assert";
import {
  describeFault,
  type Fault,
  FAULT_KINDS,
  FaultSpecError,
  formatFault,
  parseFault,
  validateFault,
} from "../src/_fault_spec.ts";
import {
  FaultPlan,
  randomSeed,
  seededRandom,
  serverFaults,
} from "../src/_fault_plan.ts";

const KINDS =
  "(latency, bandwidth, slow-read, slice, stall, close, reset, slow-close, corrupt, accept-pause)";

/** Every example of the flag's syntax, with the fault it means. */
const EXAMPLES: [string, Fault][] = [
  ["latency:delay=50ms,jitter=10ms", {
    kind: "latency",
    delay: 50,
    jitter: 10,
    p: 1,
  }],
  ["latency:delay=2s", { kind: "latency", delay: 2000, jitter: 0, p: 1 }],
  ["bandwidth:rate=64K", { kind: "bandwidth", rate: 65536, p: 1 }],
  ["slow-read:rate=1K", { kind: "slow-read", rate: 1024, p: 1 }],
  ["slice:min=1,max=4,gap=5ms", {
    kind: "slice",
    min: 1,
    max: 4,
    gap: 5,
    p: 1,
  }],
  ["slice:max=1M,min=1", { kind: "slice", min: 1, max: 1048576, gap: 0, p: 1 }],
  ["stall:after=0", { kind: "stall", after: 0, p: 1 }],
  ["stall:at=2s", { kind: "stall", at: 2000, p: 1 }],
  ["stall", { kind: "stall", after: 0, p: 1 }],
  ["close:after=10", { kind: "close", after: 10, p: 1 }],
  ["close:at=500ms", { kind: "close", at: 500, p: 1 }],
  ["reset:after=100", { kind: "reset", after: 100, p: 1 }],
  ["reset:at=500ms", { kind: "reset", at: 500, p: 1 }],
  ["reset:at=1.5s", { kind: "reset", at: 1500, p: 1 }],
  ["slow-close:delay=500ms", { kind: "slow-close", delay: 500, p: 1 }],
  ["corrupt:every=1000,skip=16", {
    kind: "corrupt",
    every: 1000,
    skip: 16,
    p: 1,
  }],
  ["corrupt:every=1000", { kind: "corrupt", every: 1000, skip: 0, p: 1 }],
  ["accept-pause:for=2s", { kind: "accept-pause", for: 2000 }],
  ["accept-pause:for=2s,every=10s", {
    kind: "accept-pause",
    for: 2000,
    every: 10000,
  }],
  ["latency:delay=50ms,p=0.3", {
    kind: "latency",
    delay: 50,
    jitter: 0,
    p: 0.3,
  }],
  ["reset:after=100,p=0.3,from=10.0.0.0/8", {
    kind: "reset",
    after: 100,
    p: 0.3,
    from: "10.0.0.0/8",
  }],
  ["bandwidth:from=::1/128,rate=1000", {
    kind: "bandwidth",
    rate: 1000,
    p: 1,
    from: "::1/128",
  }],
  ["close:p=0,at=1.001s", { kind: "close", at: 1001, p: 0 }],
];

Deno.test("parseFault() reads every example of the --fault syntax", () => {
  for (const [spec, fault] of EXAMPLES) {
    assertEquals(parseFault(spec), fault, spec);
  }
});

Deno.test("parseFault() covers every kind in FAULT_KINDS", () => {
  const kinds = new Set(EXAMPLES.map(([, fault]) => fault.kind));
  assertEquals([...kinds].sort(), [...FAULT_KINDS].sort());
});

Deno.test("formatFault() gives canonical text that parseFault() reads back to an equal fault", () => {
  for (const [spec, fault] of EXAMPLES) {
    const text = formatFault(parseFault(spec));
    assertEquals(parseFault(text), fault, `${spec} -> ${text}`);
    assertEquals(formatFault(parseFault(text)), text, text);
  }
});

Deno.test("formatFault() leaves out defaults and uses K, M and s only when exact", () => {
  const cases: [string, string][] = [
    ["latency:delay=50ms,jitter=10ms", "latency:delay=50ms,jitter=10ms"],
    ["latency:jitter=0ms,delay=2000ms,p=1", "latency:delay=2s"],
    ["bandwidth:rate=65536", "bandwidth:rate=64K"],
    ["bandwidth:rate=1000", "bandwidth:rate=1000"],
    ["slow-read:rate=1024K", "slow-read:rate=1M"],
    ["slice:min=1,max=4,gap=5ms", "slice:min=1,max=4,gap=5ms"],
    ["slice:min=1,max=4,gap=0s", "slice:min=1,max=4"],
    ["stall:after=0", "stall"],
    ["stall:at=2s", "stall:at=2s"],
    ["close:after=10", "close:after=10"],
    ["close:at=500ms", "close:at=500ms"],
    ["reset:at=1.5s", "reset:at=1500ms"],
    ["slow-close:delay=0.5s", "slow-close:delay=500ms"],
    ["corrupt:every=1000,skip=16", "corrupt:every=1000,skip=16"],
    ["corrupt:skip=0,every=2K", "corrupt:every=2K"],
    ["accept-pause:for=2s,every=10s", "accept-pause:for=2s,every=10s"],
    ["accept-pause:for=2000ms", "accept-pause:for=2s"],
    [
      "reset:from=10.0.0.0/8,p=0.3,after=100",
      "reset:after=100,p=0.3,from=10.0.0.0/8",
    ],
  ];
  for (const [spec, canonical] of cases) {
    assertEquals(formatFault(parseFault(spec)), canonical, spec);
  }
});

Deno.test("parseFault() rejects each bad spec with one line naming the bad part", () => {
  const cases: [string, string][] = [
    ["latency:delay=fast", `delay: "fast" is not a duration (like 50ms or 2s)`],
    ["teleport", `unknown kind "teleport" ${KINDS}`],
    ["LATENCY:delay=5ms", `unknown kind "LATENCY" ${KINDS}`],
    ["", `no kind given ${KINDS}`],
    ["latency", `missing key "delay" (like delay=50ms)`],
    ["latency:", `"" is not KEY=VALUE (like delay=50ms)`],
    ["latency:delay", `"delay" is not KEY=VALUE (like delay=50ms)`],
    [
      "latency:delay=50",
      `delay: "50" needs a unit, ms or s (like 50ms or 2s)`,
    ],
    ["latency:delay=2h", `delay: "2h" is not a duration (like 50ms or 2s)`],
    ["latency:delay=7200s", `delay: "7200s" is longer than 1 hour`],
    [
      "latency:delay=1.5ms",
      `delay: "1.5ms" is not a whole number of milliseconds`,
    ],
    ["latency:delay=50ms,delay=60ms", `duplicate key "delay"`],
    [
      "latency:delay=50ms,speed=1",
      `unknown key "speed" for latency (delay, jitter, p, from)`,
    ],
    [
      "latency:delay=10ms,jitter=20ms",
      `jitter: "20ms" is more than delay (10ms)`,
    ],
    ["bandwidth:rate=0", `rate: "0" is less than 1`],
    [
      "bandwidth:rate=64k",
      `rate: "64k" is not a size in bytes (like 1000, 64K or 1M)`,
    ],
    [
      "bandwidth:rate=99999999999999999999",
      `rate: "99999999999999999999" is too large`,
    ],
    ["slow-read", `missing key "rate" (like rate=1K)`],
    [
      "slow-read:rate=-1",
      `rate: "-1" is not a size in bytes (like 1000, 64K or 1M)`,
    ],
    ["slice:min=0,max=4", `min: "0" is less than 1`],
    ["slice:min=4,max=2", `max: "2" is less than min (4)`],
    ["slice:max=2", `missing key "min" (like min=1)`],
    [
      "slice:min=1,max=2,gap=2",
      `gap: "2" needs a unit, ms or s (like 50ms or 2s)`,
    ],
    ["stall:after=1,at=2s", "after and at: give one, not both"],
    ["stall:after=1,after=1", `duplicate key "after"`],
    ["close:at=1", `at: "1" needs a unit, ms or s (like 50ms or 2s)`],
    ["close:at=2h", `at: "2h" is not a duration (like 50ms or 2s)`],
    [
      "reset:after=1.5",
      `after: "1.5" is not a size in bytes (like 1000, 64K or 1M)`,
    ],
    ["reset:every=5", `unknown key "every" for reset (after, at, p, from)`],
    ["slow-close", `missing key "delay" (like delay=500ms)`],
    [
      "slow-close:delay=61m",
      `delay: "61m" is not a duration (like 50ms or 2s)`,
    ],
    ["corrupt:every=0", `every: "0" is less than 1`],
    ["corrupt", `missing key "every" (like every=1000)`],
    [
      "corrupt:every=10,skip=x",
      `skip: "x" is not a size in bytes (like 1000, 64K or 1M)`,
    ],
    ["accept-pause", `missing key "for" (like for=2s)`],
    ["accept-pause:for=0s", `for: "0s" is less than 1 ms`],
    ["accept-pause:for=2s,every=3601s", `every: "3601s" is longer than 1 hour`],
    [
      "accept-pause:for=2s,p=0.5",
      "p: accept-pause pauses the whole listener, so it takes no p or from",
    ],
    [
      "accept-pause:for=2s,from=::1/128",
      "from: accept-pause pauses the whole listener, so it takes no p or from",
    ],
    ["accept-pause:for=2s,every=2s", `every: "2s" is not longer than for (2s)`],
    ["latency:delay=5ms,p=1.5", `p: "1.5" is not a probability from 0 to 1`],
    ["latency:delay=5ms,p=x", `p: "x" is not a probability from 0 to 1`],
    ["latency:delay=5ms,p=-0.1", `p: "-0.1" is not a probability from 0 to 1`],
    [
      "latency:delay=5ms,from=10.0.0.0/33",
      `from: "10.0.0.0/33" is not an address range (like 10.0.0.0/8 or ::1/128)`,
    ],
    [
      "latency:delay=5ms,from=nowhere",
      `from: "nowhere" is not an address range (like 10.0.0.0/8 or ::1/128)`,
    ],
    [
      "latency:delay=5ms,from=",
      `from: "" is not an address range (like 10.0.0.0/8 or ::1/128)`,
    ],
    [
      "latency:delay=5ms\n",
      `delay: "5ms\\n" is not a duration (like 50ms or 2s)`,
    ],
  ];
  for (const [spec, detail] of cases) {
    const err = assertThrows(() => parseFault(spec), FaultSpecError);
    assertEquals(
      err.message,
      `Invalid --fault ${JSON.stringify(spec)}: ${detail}`,
      spec,
    );
    assert(!err.message.includes("\n"), `one line: ${JSON.stringify(spec)}`);
    assertEquals(err.name, "FaultSpecError");
    assertInstanceOf(err, Error);
  }
});

Deno.test("describeFault() says each fault in words for the log", () => {
  const cases: [string, string][] = [
    ["latency:delay=50ms,jitter=10ms", "latency 50 ms ± 10 ms"],
    ["latency:delay=1.5s", "latency 1.5 s"],
    ["reset:after=100", "reset after 100 B"],
    ["reset:at=500ms", "reset at 500 ms"],
    ["stall:after=0", "stall after 0 B"],
    ["stall", "stall after 0 B"],
    ["stall:at=2s", "stall at 2 s"],
    ["slice:min=1,max=4,gap=5ms", "slice 1-4 B, 5 ms apart"],
    ["slice:min=1K,max=4K", "slice 1 KiB-4 KiB"],
    ["slice:min=16,max=16", "slice 16 B"],
    ["bandwidth:rate=64K", "bandwidth 64 KiB/s"],
    ["bandwidth:rate=1M", "bandwidth 1 MiB/s"],
    ["bandwidth:rate=1000", "bandwidth 1000 B/s"],
    ["corrupt:every=1000,skip=16", "corrupt 1 bit in 1000 B after 16 B"],
    ["corrupt:every=1000", "corrupt 1 bit in 1000 B"],
    ["close:after=10", "close after 10 B"],
    ["slow-close:delay=500ms", "slow close 500 ms"],
    ["slow-read:rate=1K", "slow read 1 KiB/s"],
    ["accept-pause:for=2s,every=10s", "accept pause 2 s every 10 s"],
    ["accept-pause:for=2s", "accept pause 2 s once"],
    [
      "reset:after=100,p=0.3,from=10.0.0.0/8",
      "reset after 100 B, p=0.3, from 10.0.0.0/8",
    ],
  ];
  for (const [spec, words] of cases) {
    assertEquals(describeFault(parseFault(spec)), words, spec);
  }
});

Deno.test("validateFault() fills in defaults and returns a copy equal to the parsed fault", () => {
  const input = { kind: "latency", delay: 50 } as unknown as Fault;
  const checked = validateFault(input);
  assertEquals(checked, parseFault("latency:delay=50ms"));
  assert(checked !== input);
  assertEquals(
    validateFault({ kind: "close", at: 500 } as unknown as Fault),
    { kind: "close", at: 500, p: 1 },
  );
  assertEquals(
    validateFault({ kind: "stall", p: 1, from: undefined } as Fault),
    { kind: "stall", after: 0, p: 1 },
  );
  for (const [, fault] of EXAMPLES) assertEquals(validateFault(fault), fault);
});

Deno.test("validateFault() rejects bad typed faults with one line naming the field", () => {
  const cases: [unknown, string][] = [
    [
      { kind: "latency", delay: -5, jitter: 0, p: 1 },
      "Invalid latency fault: delay: -5 is negative",
    ],
    [
      { kind: "latency", delay: 1.5, p: 1 },
      "Invalid latency fault: delay: 1.5 is not a whole number of milliseconds",
    ],
    [
      { kind: "latency", delay: 3_600_001, p: 1 },
      "Invalid latency fault: delay: 3600001 is longer than 1 hour",
    ],
    [
      { kind: "latency", p: 1 },
      `Invalid latency fault: missing key "delay" (like delay=50ms)`,
    ],
    [{ kind: "teleport" }, `Invalid fault: unknown kind "teleport" ${KINDS}`],
    [{ kind: 7 }, `Invalid fault: unknown kind 7 ${KINDS}`],
    [{}, `Invalid fault: missing key "kind" ${KINDS}`],
    [null, "Invalid fault: null is not an object"],
    [
      { kind: "bandwidth", rate: "64K", p: 1 },
      `Invalid bandwidth fault: rate: "64K" is not a number`,
    ],
    [
      { kind: "bandwidth", rate: 0, p: 1 },
      "Invalid bandwidth fault: rate: 0 is less than 1",
    ],
    [
      { kind: "slow-read", rate: 1.5, p: 1 },
      "Invalid slow-read fault: rate: 1.5 is not a whole number of bytes",
    ],
    [
      { kind: "slice", min: 4, max: 2, gap: 0, p: 1 },
      "Invalid slice fault: max: 2 is less than min (4)",
    ],
    [
      { kind: "stall", after: 1, at: 2, p: 1 },
      "Invalid stall fault: after and at: give one, not both",
    ],
    [
      { kind: "reset", after: 1, p: 1, rate: 5 },
      `Invalid reset fault: unknown key "rate" for reset (after, at, p, from)`,
    ],
    [
      { kind: "accept-pause", for: 10, p: 1 },
      "Invalid accept-pause fault: p: accept-pause pauses the whole listener, so it takes no p or from",
    ],
    [
      { kind: "accept-pause", for: 10, every: 5 },
      "Invalid accept-pause fault: every: 5 is not longer than for (10ms)",
    ],
    [
      { kind: "latency", delay: 5, p: NaN },
      "Invalid latency fault: p: NaN is not a probability from 0 to 1",
    ],
    [
      { kind: "close", p: 1, from: "10.0.0.0/8,::1/128" },
      `Invalid close fault: from: "10.0.0.0/8,::1/128" is not an address range (like 10.0.0.0/8 or ::1/128)`,
    ],
    [
      { kind: "corrupt", every: 1e300, p: 1 },
      "Invalid corrupt fault: every: 1e+300 is too large",
    ],
  ];
  for (const [fault, message] of cases) {
    const err = assertThrows(
      () => validateFault(fault as Fault),
      FaultSpecError,
    );
    assertEquals(err.message, message);
    assert(!err.message.includes("\n"));
  }
});

Deno.test("formatFault() and describeFault() refuse an invalid fault", () => {
  const bad = { kind: "bandwidth", rate: 0, p: 1 } as Fault;
  assertThrows(() => formatFault(bad), FaultSpecError, "rate: 0");
  assertThrows(() => describeFault(bad), FaultSpecError, "rate: 0");
});

// --- FaultPlan ---

const PLAN_FAULTS: Fault[] = [
  "latency:delay=50ms,jitter=10ms,p=0.3",
  "accept-pause:for=2s,every=10s",
  "reset:after=100,p=0.5",
  "slice:min=1,max=4,p=0.1",
  "corrupt:every=1000",
].map(parseFault);

/** Which faults (by kind) hit connections 1..n, as one string each. */
function hits(plan: FaultPlan, ks: number[], remote = "127.0.0.1"): string[] {
  return ks.map((k) =>
    plan.forConnection(k, remote).faults.map((f) => f.kind).join(",")
  );
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

Deno.test("FaultPlan gives the same hits for the same seed and connection", () => {
  const ks = range(1, 1000);
  const a = hits(new FaultPlan(PLAN_FAULTS, 42), ks);
  const b = hits(new FaultPlan(PLAN_FAULTS, 42), ks);
  assertEquals(a, b);
  const plan = new FaultPlan(PLAN_FAULTS, 42);
  assertEquals(hits(plan, [17, 17, 17]), [a[16], a[16], a[16]]);
});

Deno.test("FaultPlan gives different hits for different seeds", () => {
  const ks = range(1, 1000);
  const seen = new Set(
    [0, 1, 2, 42, 0xffffffff].map((seed) =>
      hits(new FaultPlan(PLAN_FAULTS, seed), ks).join(";")
    ),
  );
  assertEquals(seen.size, 5);
});

Deno.test("FaultPlan answers do not depend on the order connections are asked", () => {
  const plan = new FaultPlan(PLAN_FAULTS, 7);
  const forwards = hits(plan, range(1, 1000));
  const backwards = hits(
    new FaultPlan(PLAN_FAULTS, 7),
    range(1, 1000).reverse(),
  )
    .reverse();
  assertEquals(backwards, forwards);
  const shuffled = range(1, 1000).sort((x, y) =>
    ((x * 7919) % 1009) - ((y * 7919) % 1009)
  );
  const answers = new Map(
    shuffled.map((k) => [k, hits(plan, [k])[0]!] as const),
  );
  assertEquals(range(1, 1000).map((k) => answers.get(k)), forwards);
});

Deno.test("FaultPlan draws each fault's chance alone: adding a fault leaves the others' hits", () => {
  const base = new FaultPlan(PLAN_FAULTS, 99);
  const more = new FaultPlan([...PLAN_FAULTS, parseFault("stall:p=0.5")], 99);
  for (const k of range(1, 300)) {
    const a = base.forConnection(k, "127.0.0.1").faults;
    const b = more.forConnection(k, "127.0.0.1").faults.filter((f) =>
      f.kind !== "stall"
    );
    assertEquals(b, a, `connection ${k}`);
  }
});

Deno.test("FaultPlan hits about p of 1,000 connections with p=0.3", () => {
  const faults = [parseFault("reset:after=100,p=0.3")];
  for (const seed of [1, 2, 3, 42, 1234, 0xdeadbeef, 0xffffffff]) {
    const plan = new FaultPlan(faults, seed);
    const count = range(1, 1000).filter((k) =>
      plan.forConnection(k, "10.0.0.1").faults.length === 1
    ).length;
    assert(
      count >= 250 && count <= 350,
      `seed ${seed}: ${count} of 1000 hit`,
    );
  }
});

Deno.test("FaultPlan always applies p=1 and never p=0", () => {
  const plan = new FaultPlan(
    ["stall:p=0", "close", "reset:p=1"].map(parseFault),
    5,
  );
  for (const k of range(1, 500)) {
    assertEquals(
      plan.forConnection(k, "::1").faults.map((f) => f.kind),
      ["close", "reset"],
    );
  }
});

Deno.test("FaultPlan applies from= only to clients in the range, IPv4 and IPv6", () => {
  const plan = new FaultPlan(
    [
      "latency:delay=5ms,from=10.0.0.0/8",
      "close:from=::1/128",
      "reset:from=2001:db8::/32",
      "stall",
    ].map(parseFault),
    3,
  );
  const kinds = (remote: string | undefined) =>
    plan.forConnection(1, remote).faults.map((f) => f.kind);
  assertEquals(kinds("10.1.2.3"), ["latency", "stall"]);
  assertEquals(kinds("::ffff:10.9.9.9"), ["latency", "stall"]);
  assertEquals(kinds("11.0.0.1"), ["stall"]);
  assertEquals(kinds("::1"), ["close", "stall"]);
  assertEquals(kinds("::2"), ["stall"]);
  assertEquals(kinds("2001:db8:1::5"), ["reset", "stall"]);
  assertEquals(kinds("2001:db9::5"), ["stall"]);
  assertEquals(kinds(undefined), ["stall"]);
});

Deno.test("FaultPlan leaves accept-pause to serverFaults()", () => {
  const plan = new FaultPlan(PLAN_FAULTS, 11);
  for (const k of range(1, 100)) {
    assert(
      plan.forConnection(k, "127.0.0.1").faults.every((f: Fault) =>
        f.kind !== "accept-pause"
      ),
    );
  }
  assertEquals(serverFaults(PLAN_FAULTS), [
    { kind: "accept-pause", for: 2000, every: 10000 },
  ]);
  assertEquals(serverFaults([]), []);
});

Deno.test("FaultPlan gives each connection a reproducible random() sequence of its own", () => {
  const take = (plan: FaultPlan, k: number) => {
    const random = plan.forConnection(k, undefined).random;
    return Array.from({ length: 20 }, () => random());
  };
  const plan = new FaultPlan(PLAN_FAULTS, 2024);
  const a = take(plan, 5);
  take(plan, 6);
  assertEquals(take(plan, 5), a);
  assertEquals(take(new FaultPlan([], 2024), 5), a);
  assertNotEquals(take(plan, 6), a);
  assertNotEquals(take(new FaultPlan(PLAN_FAULTS, 2025), 5), a);
  const many = Array.from({ length: 10_000 }, seededRandom(2024, 5));
  assert(many.every((x) => x >= 0 && x < 1));
  const mean = many.reduce((s, x) => s + x, 0) / many.length;
  assert(Math.abs(mean - 0.5) < 0.02, `mean ${mean}`);
});

Deno.test("FaultPlan rejects bad seeds, connection numbers and faults", () => {
  for (const seed of [-1, 1.5, 2 ** 32, NaN]) {
    const err = assertThrows(() => new FaultPlan([], seed), RangeError);
    assertEquals(
      err.message,
      `Invalid fault seed: ${seed} is not an integer from 0 to 4294967295`,
    );
  }
  const plan = new FaultPlan([], 0);
  for (const k of [0, -1, 1.5]) {
    assertThrows(
      () => plan.forConnection(k, undefined),
      RangeError,
      `Invalid connection number: ${k} is not a positive integer`,
    );
  }
  assertThrows(
    () => new FaultPlan([{ kind: "slice", min: 0, max: 1, gap: 0, p: 1 }], 1),
    FaultSpecError,
    "Invalid slice fault: min: 0 is less than 1",
  );
});

Deno.test("randomSeed() gives unsigned 32-bit integers", () => {
  const seeds = Array.from({ length: 20 }, randomSeed);
  assert(seeds.every((s) => Number.isInteger(s) && s >= 0 && s < 2 ** 32));
  assert(new Set(seeds).size > 1);
});
