// Copyright the upcase authors. MIT license.
// `deno compile` end to end: the standalone server and client, built with the
// same scoped permissions as `deno task compile`, serve and answer on
// loopback. Compiling needs Deno's base runtime (denort): from DENORT_BIN, or
// from the cache `deno compile` fills when it can download. Without either
// the test says so and is skipped.

import { assertEquals, assertMatch } from "@std/assert";
import { ChildLines, ROOT, text } from "./_util.ts";

/** Why compiling cannot run here, or undefined when it can. */
function missingRuntime(): string | undefined {
  const explicit = Deno.env.get("DENORT_BIN");
  if (explicit) {
    try {
      Deno.statSync(explicit);
      return undefined;
    } catch {
      return `DENORT_BIN=${explicit} does not exist`;
    }
  }
  const cacheDir = Deno.env.get("DENO_DIR") ??
    `${Deno.env.get("HOME")}/.cache/deno`;
  const cached =
    `${cacheDir}/dl/release/v${Deno.version.deno}/denort-x86_64-unknown-linux-gnu.zip`;
  try {
    Deno.statSync(cached);
    return undefined;
  } catch {
    return `no denort runtime for deno compile: set DENORT_BIN to a denort ${Deno.version.deno} binary, or run once where dl.deno.land is reachable (looked for ${cached})`;
  }
}

/** Port 6666, the one the compiled programs may use: is it free? */
function port6666Busy(): string | undefined {
  try {
    Deno.listen({ hostname: "0.0.0.0", port: 6666 }).close();
    return undefined;
  } catch (err: unknown) {
    if (err instanceof Deno.errors.AddrInUse) return "port 6666 is in use";
    throw err;
  }
}

const skipReason = missingRuntime() ?? port6666Busy();
if (skipReason !== undefined) {
  console.warn(`compile_test.ts: SKIPPED: ${skipReason}`);
}

async function compile(
  script: string,
  allowNet: string,
  output: string,
  flags: string[] = [],
): Promise<void> {
  const { code, stderr } = await new Deno.Command(Deno.execPath(), {
    args: [
      "compile",
      "--quiet",
      `--allow-net=${allowNet}`,
      ...flags,
      "--output",
      output,
      new URL(script, ROOT).pathname,
    ],
    stdout: "null",
    stderr: "piped",
  }).output();
  if (code !== 0) throw new Error(`deno compile failed: ${text(stderr)}`);
}

Deno.test({
  name:
    "deno compile builds a server and client that talk on port 6666 with their permissions baked in",
  ignore: skipReason !== undefined,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "upcase_compile_" });
    try {
      // The same flags as `deno task compile`.
      await compile("server.ts", "0.0.0.0:6666", `${dir}/upcase-server`, [
        "--include",
        new URL("src/_worker.ts", ROOT).pathname,
      ]);
      await compile("client.ts", "127.0.0.1:6666", `${dir}/upcase-client`);
      // Its log is read from the start and all the time.
      await using server = new ChildLines(
        new Deno.Command(`${dir}/upcase-server`, {
          stdout: "piped",
          stderr: "piped",
        }).spawn(),
      );
      assertMatch(
        await server.waitForLine(/^/),
        /^Accepting connections on 0\.0\.0\.0:6666 /,
      );
      const client = await new Deno.Command(`${dir}/upcase-client`, {
        args: ["compiled"],
        stdout: "piped",
        stderr: "piped",
      }).output();
      assertEquals(text(client.stdout), "Response from server:\nCOMPILED\n");
      assertEquals(client.code, 0);
      // The baked-in permission covers port 6666 only.
      const other = await new Deno.Command(`${dir}/upcase-client`, {
        args: ["--port", "6667", "x"],
        stdout: "piped",
        stderr: "piped",
      }).output();
      assertEquals(other.code, 2);
      assertEquals((await server.stop("SIGTERM")).code, 0);
      // The Worker module is included: --workers 2 runs as it is.
      await using workers = new ChildLines(
        new Deno.Command(`${dir}/upcase-server`, {
          args: ["--workers", "2"],
          stdout: "piped",
          stderr: "piped",
        }).spawn(),
      );
      // A --workers server that cannot start says why on stderr, which
      // waitForLine() shows.
      assertMatch(
        await workers.waitForLine(/^/),
        /^Accepting connections on 0\.0\.0\.0:6666 /,
      );
      const reply = await new Deno.Command(`${dir}/upcase-client`, {
        args: ["two workers"],
        stdout: "piped",
      }).output();
      assertEquals(text(reply.stdout), "Response from server:\nTWO WORKERS\n");
      assertEquals((await workers.stop("SIGTERM")).code, 0);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
