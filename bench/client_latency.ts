// Copyright the upcase authors. MIT license.
/**
 * The clients as products: how long the one-shot client takes from exec to
 * exit, and the round trip of one line in `--interactive` mode, next to peers
 * measured in the same run (127.0.0.1 only).
 *
 * ```sh
 * deno task bench:clients
 * ```
 *
 * @module
 */

const ROOT = new URL("../", import.meta.url);
const RUNS = 20;
const LINES = 2000;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;
}

async function startServer(): Promise<[Deno.ChildProcess, number]> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net=127.0.0.1:0",
      new URL("server.ts", ROOT).pathname,
      "--host",
      "127.0.0.1",
      "--port",
      "0",
      "--quiet",
    ],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const { value } = await reader.read();
  reader.cancel(); // --quiet: nothing more comes before the summary
  const port = Number(/:(\d+) \.\.\./.exec(value ?? "")?.[1]);
  if (!port) throw new Error(`server did not start: ${value}`);
  return [child, port];
}

/** Wall time of `command` from spawn to exit, RUNS times; its output checked. */
async function timeRuns(
  name: string,
  command: string,
  args: string[],
  expect: string,
): Promise<number[] | undefined> {
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const started = performance.now();
    let output: Deno.CommandOutput;
    try {
      output = await new Deno.Command(command, { args, stdout: "piped" })
        .output();
    } catch (err: unknown) {
      if (err instanceof Deno.errors.NotFound) {
        console.error(`${name}: skipped (${command} not found)`);
        return undefined;
      }
      throw err;
    }
    times.push(performance.now() - started);
    const stdout = new TextDecoder().decode(output.stdout);
    if (!stdout.includes(expect)) {
      throw new Error(`${name}: unexpected output ${JSON.stringify(stdout)}`);
    }
  }
  return times;
}

/** Round trip of one line through `client.ts -i`, LINES times. */
async function interactiveRoundTrips(port: number): Promise<number[]> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      `--allow-net=127.0.0.1:${port}`,
      new URL("client.ts", ROOT).pathname,
      "--port",
      String(port),
      "-i",
    ],
    stdin: "piped",
    stdout: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  const reader = child.stdout.getReader();
  const line = new TextEncoder().encode("the quick brown fox\n");
  const times: number[] = [];
  for (let i = 0; i < LINES; i++) {
    const started = performance.now();
    await writer.write(line);
    let got = 0;
    while (got < line.length) {
      const { value, done } = await reader.read();
      if (done) throw new Error("client ended early");
      got += value.length;
    }
    times.push(performance.now() - started);
  }
  await writer.close();
  await reader.cancel();
  await child.status;
  return times;
}

/** The floor: the same round trip from this process over a raw socket. */
async function rawRoundTrips(port: number): Promise<number[]> {
  using conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const line = new TextEncoder().encode("the quick brown fox\n");
  const buf = new Uint8Array(64);
  const times: number[] = [];
  for (let i = 0; i < LINES; i++) {
    const started = performance.now();
    await conn.write(line);
    let got = 0;
    while (got < line.length) got += (await conn.read(buf)) ?? Infinity;
    times.push(performance.now() - started);
  }
  return times;
}

const [server, port] = await startServer();
try {
  const rows: [string, number[] | undefined][] = [];
  rows.push([
    "`client.ts` (deno run, warm cache)",
    await timeRuns("client.ts", Deno.execPath(), [
      "run",
      `--allow-net=127.0.0.1:${port}`,
      new URL("client.ts", ROOT).pathname,
      "--port",
      String(port),
      "hello",
    ], "HELLO"),
  ]);
  rows.push([
    "Python 3 socket one-liner",
    await timeRuns("python3", "python3", [
      "-c",
      `import socket; s=socket.create_connection(("127.0.0.1",${port})); s.sendall(b"hello"); s.shutdown(socket.SHUT_WR); print(s.recv(80).decode())`,
    ], "HELLO"),
  ]);
  rows.push([
    "Node.js `net` one-liner",
    await timeRuns("node", "node", [
      "-e",
      `const s=require("net").connect(${port},"127.0.0.1",()=>s.end("hello"));s.on("data",d=>process.stdout.write(d))`,
    ], "HELLO"),
  ]);
  console.log(
    `\n### One-shot client: exec to exit (${RUNS} runs, against server.ts)\n`,
  );
  console.log("| client | median ms | p90 ms |\n| --- | ---: | ---: |");
  for (const [name, times] of rows) {
    if (!times) continue;
    console.log(
      `| ${name} | ${median(times).toFixed(1)} | ${
        percentile(times, 0.9).toFixed(1)
      } |`,
    );
  }
  const interactive = await interactiveRoundTrips(port);
  const raw = await rawRoundTrips(port);
  console.log(
    `\n### Interactive round trip: one 20-byte line (${LINES} lines)\n`,
  );
  console.log(
    "| path | median µs | p99 µs |\n| --- | ---: | ---: |",
  );
  for (
    const [name, times] of [
      ["`client.ts -i` (stdin pipe → socket → stdout pipe)", interactive],
      ["raw socket in the measuring process (the floor)", raw],
    ] as const
  ) {
    console.log(
      `| ${name} | ${(median(times) * 1000).toFixed(0)} | ${
        (percentile(times, 0.99) * 1000).toFixed(0)
      } |`,
    );
  }
} finally {
  server.kill("SIGTERM");
  await server.status;
}
