// Copyright the upcase authors. MIT license.
// What a first run downloads: the server and the client fetch only what they
// import (deno-std), never the tools of the tests and the WebAssembly build
// (playwright-core, wabt), which dev.lock pins apart from deno.lock.

import { assert, assertEquals } from "@std/assert";
import { CHILD_TIME_LIMIT_MS, ROOT, text } from "./_util.ts";

interface Lockfile {
  specifiers: Record<string, string>;
  npm: Record<string, { integrity: string }>;
}

async function readJson<T>(name: string): Promise<T> {
  return JSON.parse(await Deno.readTextFile(new URL(name, ROOT))) as T;
}

/** The npm packages deno.json maps `@std/...` to, as `name@version`. */
async function programPackages(): Promise<string[]> {
  const config = await readJson<{ imports: Record<string, string> }>(
    "deno.json",
  );
  const packages = Object.values(config.imports).flatMap((target) => {
    const match = /^npm:((?:@[^/]+\/)?[^/@]+@[^/]+)/.exec(target);
    return match ? [match[1]!] : [];
  });
  return [...new Set(packages)].sort();
}

Deno.test("deno.lock pins exactly the npm packages the program imports, with the integrity dev.lock has", async () => {
  const program = await programPackages();
  assertEquals(program, ["deno-std@1.4.0"]);
  const lock = await readJson<Lockfile>("deno.lock");
  assertEquals(Object.keys(lock.npm).sort(), program);
  const dev = await readJson<Lockfile>("dev.lock");
  for (const name of program) {
    assertEquals(dev.npm[name], lock.npm[name], `${name} in dev.lock`);
  }
  // The tools are in dev.lock only.
  assert("playwright-core@1.64.1" in dev.npm);
  assert("wabt@1.0.39" in dev.npm);
});

/** This Deno's npm cache folder, where the test's own deno-std is. */
async function npmCache(): Promise<string> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json"],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  assert(out.success, "deno info --json failed");
  return (JSON.parse(text(out.stdout)) as { npmCache: string }).npmCache;
}

Deno.test("server.ts and client.ts start from a Deno cache that holds only deno-std, with --cached-only (no network)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "upcase_deno_dir_" });
  try {
    const registry = `${dir}/npm/registry.npmjs.org`;
    await Deno.mkdir(registry, { recursive: true });
    const cache = await npmCache();
    for (const name of await programPackages()) {
      const folder = name.slice(0, name.lastIndexOf("@"));
      const copy = await new Deno.Command("cp", {
        args: ["-r", `${cache}/registry.npmjs.org/${folder}`, registry],
      }).output();
      assert(copy.success, `copying ${folder} from the npm cache failed`);
    }
    for (
      const [script, allowNet, expected] of [
        ["server.ts", "0.0.0.0:6666", /^upcase server \d/],
        ["client.ts", "127.0.0.1:6666", /^upcase client \d/],
      ] as const
    ) {
      // README's command, from the project folder, as a new user runs it.
      const out = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--cached-only",
          `--allow-net=${allowNet}`,
          script,
          "--version",
        ],
        cwd: ROOT.pathname,
        env: { DENO_DIR: dir, NO_COLOR: "1" },
        stdout: "piped",
        stderr: "piped",
        signal: AbortSignal.timeout(CHILD_TIME_LIMIT_MS),
      }).output();
      assertEquals(
        [out.code, text(out.stderr)],
        [0, ""],
        `${script} --version from a cache with only deno-std`,
      );
      assert(expected.test(text(out.stdout)), text(out.stdout));
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
