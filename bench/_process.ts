// Copyright the upcase authors. MIT license.
/**
 * The child processes of the benchmark: every one is tracked, so that all
 * can be killed on the way out.
 *
 * @module
 */

import { ROOT_DIR } from "./_paths.ts";

/** Every child still running; all are killed on the way out. */
const live = new Set<Deno.ChildProcess>();

/**
 * Starts a child process and tracks it until it exits.
 *
 * @param command The program.
 * @param args Its arguments.
 * @param options Everything else {@linkcode Deno.Command} takes.
 * @returns The running child.
 * @throws {Deno.errors.NotFound} When the program does not exist.
 */
export function spawn(
  command: string,
  args: string[],
  options: Omit<Deno.CommandOptions, "args"> = {},
): Deno.ChildProcess {
  const child = new Deno.Command(command, { args, ...options }).spawn();
  live.add(child);
  child.status.then(() => live.delete(child), () => live.delete(child));
  return child;
}

/**
 * Sends a signal to a child, unless it is gone already.
 *
 * @param child The child.
 * @param signal The signal.
 */
export function killQuietly(
  child: Deno.ChildProcess,
  signal: Deno.Signal,
): void {
  try {
    child.kill(signal);
  } catch {
    // Already gone
  }
}

/** Kills every child still running with SIGKILL. */
export function killAll(): void {
  for (const child of live) killQuietly(child, "SIGKILL");
}

/** What {@linkcode capture} returns. */
export interface Captured {
  /** The exit code. */
  code: number;
  /** stdout, decoded. */
  stdout: string;
  /** stderr, decoded. */
  stderr: string;
}

/**
 * Runs a command from the repository root to completion, killed after
 * `timeoutMs`.
 *
 * @param command The program.
 * @param args Its arguments.
 * @param timeoutMs The longest it may run.
 * @returns Its exit code and output; undefined when it cannot be started.
 */
export async function capture(
  command: string,
  args: string[],
  timeoutMs = 30_000,
): Promise<Captured | undefined> {
  let child: Deno.ChildProcess;
  try {
    child = spawn(command, args, {
      cwd: ROOT_DIR,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    });
  } catch (err: unknown) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
  const timer = setTimeout(() => killQuietly(child, "SIGKILL"), timeoutMs);
  try {
    const out = await child.output();
    const decoder = new TextDecoder();
    return {
      code: out.code,
      stdout: decoder.decode(out.stdout),
      stderr: decoder.decode(out.stderr),
    };
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Waits.
 *
 * @param ms How long, in milliseconds.
 * @returns A promise that resolves after `ms`.
 */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
