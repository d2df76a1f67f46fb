// Copyright the upcase authors. MIT license.
/**
 * Running the C load generator (bench/loadgen.c) and reading its output.
 *
 * @module
 */

import { LOADGEN } from "./_paths.ts";
import { killQuietly, spawn } from "./_process.ts";

/** The generator's result: one JSON object. */
export type Json = Record<string, unknown>;

/**
 * Runs the generator and returns its JSON (its last line). Every other line
 * of its stdout ("mark start", "mark end", "ready connected=N") is handed to
 * `onLine` as it comes; in idle mode the generator holds its connections
 * until `onLine` has returned for the "ready" line, then closes them.
 *
 * @param args The generator's arguments, the mode first.
 * @param timeoutMs It is killed after this long.
 * @param onLine Called for each line that is not the JSON.
 * @returns The generator's JSON.
 * @throws {Error} When it fails, prints no JSON or is killed.
 */
export async function runLoadgen(
  args: string[],
  timeoutMs: number,
  onLine: (line: string) => Promise<void>,
): Promise<Json> {
  const idle = args[0] === "idle";
  const child = spawn(LOADGEN, args, {
    stdin: idle ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
  });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    killQuietly(child, "SIGKILL");
  }, timeoutMs);
  const stderr = new Response(child.stderr).text();
  try {
    const lines: string[] = [];
    const decoder = new TextDecoder();
    let pending = "";
    for await (const chunk of child.stdout) {
      pending += decoder.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = pending.indexOf("\n")) >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        lines.push(line);
        if (line.startsWith("{")) continue;
        try {
          await onLine(line);
        } finally {
          if (idle && line.startsWith("ready")) await child.stdin.close();
        }
      }
    }
    const status = await child.status;
    const errText = (await stderr).trim();
    const last = lines.findLast((line) => line.startsWith("{"));
    if (timedOut) {
      throw new Error(
        `Load generator killed after ${timeoutMs} ms: ${errText}`,
      );
    }
    if (!status.success || last === undefined) {
      throw new Error(`Load generator failed (${status.code}): ${errText}`);
    }
    return JSON.parse(last) as Json;
  } finally {
    clearTimeout(timer);
    killQuietly(child, "SIGKILL");
    await child.status;
    await stderr.catch(() => "");
  }
}

/**
 * A number from the generator's JSON.
 *
 * @param json The JSON, if any.
 * @param key The field.
 * @returns Its value; NaN when it is missing or not a number.
 */
export function num(json: Json | undefined, key: string): number {
  const value = json?.[key];
  return typeof value === "number" ? value : NaN;
}
