// Copyright the upcase authors. MIT license.
// The CLI's --workers N, the way `deno serve --parallel` does it: the same
// server runs in N Workers of one process, each with its own SO_REUSEPORT
// listener on the same address, so the kernel spreads the connections. The
// main thread owns the log, the signals and the totals: the Workers post
// their events to it, and share one connection limit through a
// SharedArrayBuffer. A Worker that dies is logged and replaced. Linux only
// (elsewhere SO_REUSEPORT does not spread connections), and Deno.listen's
// reusePort needs --unstable-net. Internal.

import { formatFault } from "./_fault_spec.ts";
import type { ServeOptions, ServerEvent, ServerStats } from "./serve.ts";
import { forgetWorker, sharedLimitCounters } from "./_conn_limit.ts";
import { ServerTotals } from "./_totals.ts";

/** A Worker's server options: everything but the logging hook. */
export type WorkerServeOptions = Omit<ServeOptions, "onEvent" | "trace"> & {
  trace?: boolean;
};

/** Messages from the main thread to a Worker. */
export type ToWorker =
  | {
    type: "start";
    /** The Worker's number, from 0. */
    worker: number;
    options: WorkerServeOptions;
    /** The shared connection counts, see SharedLimit. */
    counts: Int32Array;
    /** Slot 0 is 1 while the main thread wants every connection traced. */
    traceFlag: Int32Array;
  }
  | { type: "shutdown"; grace: number }
  /** Replace the faults; answered with `faults-set` and the same `id`. */
  | { type: "set-faults"; faults: string[]; id: number }
  | { type: "crash" };

/** Messages from a Worker to the main thread. */
export type FromWorker =
  | { type: "event"; event: ServerEvent }
  | { type: "failed"; name: string; message: string }
  /** Every half second: what its open connections have moved so far. */
  | { type: "open-bytes"; bytesIn: number; bytesOut: number }
  /** The faults of `set-faults` `id` are in place. */
  | { type: "faults-set"; id: number }
  | { type: "finished" };

/** Options for {@linkcode WorkerPool.start}. */
export interface WorkerPoolOptions {
  /** How many Workers, from 1. */
  workers: number;
  /** The server each runs; `port` 0 picks one free port for all. */
  serve: WorkerServeOptions;
  /**
   * Every event of every Worker, in the order they arrive, but for the
   * `listen` and `shutdown` events: one of each for the whole server.
   */
  onEvent: (event: ServerEvent, worker: number | undefined) => void;
  /** A Worker died (a bug): its open connections were lost. */
  onWorkerDied: (worker: number, error: string, lost: number) => void;
}

/** The module each Worker runs. */
const WORKER_MODULE = new URL("./_worker.ts", import.meta.url);

/**
 * Whether this process may start Workers on `WORKER_MODULE`: a Worker needs
 * read permission for the local modules it loads.
 *
 * @returns The folder to name in `--allow-read`, or undefined when granted.
 */
export function missingWorkerReadPermission(): string | undefined {
  // A compiled program carries its modules inside; so does a remote one.
  if (Deno.build.standalone || WORKER_MODULE.protocol !== "file:") {
    return undefined;
  }
  const folder = decodeURIComponent(new URL("./", WORKER_MODULE).pathname)
    .replace(/\/$/, "");
  const { state } = Deno.permissions.querySync({ name: "read", path: folder });
  return state === "granted" ? undefined : folder;
}

/**
 * Whether `Deno.listen({ reusePort })` is available: it needs
 * `--unstable-net` (deno.json sets it for this folder), and without it Deno
 * ends the process (exit 70) rather than throw. `Deno.listenDatagram`
 * exists exactly when `--unstable-net` is on.
 *
 * @returns True when reusePort can be used.
 */
export function hasReusePort(): boolean {
  return typeof (Deno as { listenDatagram?: unknown }).listenDatagram ===
    "function";
}

/** A Worker of the pool, and what the main thread knows of it. */
interface Slot {
  worker: Worker;
  /** Its open connections, from its events: number, client, when. */
  open: Map<number, { remote: Deno.Addr; since: number }>;
  finished: boolean;
  /** It died (and may have been replaced). */
  died: boolean;
  /** The bytes its open connections have moved, as last posted. */
  openIn: number;
  openOut: number;
}

/** The Workers of one server. */
export class WorkerPool {
  /** The address every Worker listens on. */
  readonly addr: Deno.NetAddr;
  /** Resolves once every Worker's server has stopped. */
  readonly finished: Promise<void>;

  #options: WorkerPoolOptions;
  #serve: WorkerServeOptions;
  #counts: Int32Array;
  #traceFlag = new Int32Array(new SharedArrayBuffer(4));
  #slots: Slot[] = [];
  #totals = new ServerTotals();
  #closing = false;
  #shutdownsSeen = 0;
  #shutdown: Extract<ServerEvent, { type: "shutdown" }> | undefined;
  #allFinished = Promise.withResolvers<void>();
  /** `set-faults` messages waiting for their Workers' answers, by id. */
  #faultChanges = new Map<number, { left: Set<Slot>; done: () => void }>();
  #nextChange = 1;

  private constructor(
    options: WorkerPoolOptions,
    serve: WorkerServeOptions,
    addr: Deno.NetAddr,
  ) {
    this.#options = options;
    this.#serve = serve;
    this.addr = addr;
    this.#counts = sharedLimitCounters(options.workers);
    this.finished = this.#allFinished.promise;
  }

  /**
   * Starts the Workers, each listening on the same address.
   *
   * @param options How many, the server's options and the event hooks.
   * @returns The pool, once every Worker listens.
   * @throws What `Deno.listen` throws for the address (`AddrInUse`...).
   */
  static async start(options: WorkerPoolOptions): Promise<WorkerPool> {
    const hostname = options.serve.hostname ?? "0.0.0.0";
    // Listening without SO_REUSEPORT first: fails when anything (another
    // upcase with --workers included) holds the port, and picks one port for
    // all when 0 was asked for.
    const probe = Deno.listen({
      hostname,
      port: options.serve.port ?? 6666,
      transport: "tcp",
    });
    const addr = probe.addr;
    probe.close();
    const serve = { ...options.serve, hostname, port: addr.port };
    const pool = new WorkerPool(options, serve, addr);
    try {
      await Promise.all(
        Array.from({ length: options.workers }, (_, i) => pool.#spawn(i)),
      );
    } catch (err: unknown) {
      for (const slot of pool.#slots) slot.worker.terminate();
      throw err;
    }
    const { faults, faultSeed } = options.serve;
    options.onEvent({
      type: "listen",
      addr,
      ...tlsMode(pool),
      ...(faults?.length && faultSeed !== undefined
        ? {
          faults: {
            specs: faults.map((f) =>
              typeof f === "string" ? f : formatFault(f)
            ),
            seed: faultSeed,
          },
        }
        : {}),
    }, undefined);
    return pool;
  }

  /**
   * The totals of all Workers, from their events; the byte counts include
   * what their open connections had moved at their last report (every half
   * second).
   */
  get stats(): ServerStats {
    const stats = this.#totals.stats;
    for (const slot of this.#slots) {
      if (slot.finished) continue;
      stats.bytesIn += slot.openIn;
      stats.bytesOut += slot.openOut;
    }
    return stats;
  }

  /**
   * Stops every Worker's server: each stops accepting and gives its open
   * connections up to `grace` milliseconds.
   *
   * @param options The grace period.
   * @returns A promise that resolves when all have stopped.
   */
  async shutdown(options: { grace: number }): Promise<void> {
    this.#closing = true;
    for (const slot of this.#slots) {
      if (!slot.finished) post(slot.worker, { type: "shutdown", ...options });
    }
    await this.finished;
  }

  /**
   * Turns tracing of new connections on or off in every Worker (on top of
   * the `trace` option they were started with).
   *
   * @param on Whether to trace.
   */
  setTrace(on: boolean): void {
    Atomics.store(this.#traceFlag, 0, on ? 1 : 0);
  }

  /** The faults every Worker has (see {@linkcode WorkerPool.setFaults}). */
  get faults(): readonly string[] {
    return this.#serve.faults?.map(String) ?? [];
  }

  /** The faults' seed, the same in every Worker. */
  get faultSeed(): number | undefined {
    return this.#serve.faultSeed;
  }

  /**
   * Replaces the faults of every Worker (and of the ones that replace a
   * Worker that dies); resolves once each running Worker has them.
   *
   * @param faults Checked `--fault` strings (see `Server.setFaults`).
   */
  async setFaults(faults: string[]): Promise<void> {
    this.#serve = { ...this.#serve, faults };
    const id = this.#nextChange++;
    const left = new Set(this.#slots.filter((s) => !s.finished && !s.died));
    if (left.size === 0) return;
    const done = Promise.withResolvers<void>();
    this.#faultChanges.set(id, { left, done: done.resolve });
    for (const slot of left) {
      post(slot.worker, { type: "set-faults", faults, id });
    }
    try {
      await done.promise;
    } finally {
      this.#faultChanges.delete(id);
    }
  }

  /** A Worker has the faults of change `id` (or is gone). */
  #faultsSet(id: number, slot: Slot): void {
    const change = this.#faultChanges.get(id);
    if (change === undefined) return;
    change.left.delete(slot);
    if (change.left.size === 0) change.done();
  }

  /**
   * Makes a Worker throw an uncaught error, as a bug would: for tests of
   * the replacement.
   *
   * @param worker Which one, from 0.
   */
  crash(worker: number): void {
    post(this.#slots[worker]!.worker, { type: "crash" });
  }

  #tls: "shutdown" | "relay" | undefined;

  /** Starts Worker `index`; resolves once it listens. */
  #spawn(index: number): Promise<void> {
    const listening = Promise.withResolvers<void>();
    const worker = new Worker(WORKER_MODULE.href, { type: "module" });
    const slot: Slot = {
      worker,
      open: new Map(),
      finished: false,
      died: false,
      openIn: 0,
      openOut: 0,
    };
    this.#slots[index] = slot;
    worker.onmessage = (message: MessageEvent<FromWorker>) => {
      const data = message.data;
      if (data.type === "failed") {
        listening.reject(rebuildError(data.name, data.message));
      } else if (data.type === "finished") {
        this.#finish(slot);
      } else if (data.type === "faults-set") {
        this.#faultsSet(data.id, slot);
      } else if (data.type === "open-bytes") {
        slot.openIn = data.bytesIn;
        slot.openOut = data.bytesOut;
      } else if (data.event.type === "listen") {
        this.#tls = data.event.tls;
        listening.resolve();
      } else this.#event(data.event, index, slot);
    };
    worker.onerror = (event: ErrorEvent) => {
      event.preventDefault();
      this.#died(index, slot, event.message);
      listening.reject(new Error(`Worker ${index} failed: ${event.message}`));
    };
    post(worker, {
      type: "start",
      worker: index,
      options: this.#serve,
      counts: this.#counts,
      traceFlag: this.#traceFlag,
    });
    return listening.promise;
  }

  #event(event: ServerEvent, index: number, slot: Slot): void {
    if (event.type === "connect") {
      slot.open.set(event.id, { remote: event.remote, since: Date.now() });
    }
    if (event.type === "close") slot.open.delete(event.id);
    if (event.type === "shutdown") {
      // One line for the whole server, once every listener is closed.
      this.#shutdownsSeen++;
      this.#shutdown = {
        type: "shutdown",
        graceMs: event.graceMs,
        open: (this.#shutdown?.open ?? 0) + event.open,
      };
      if (this.#shutdownsSeen === this.#live()) {
        this.#options.onEvent(this.#shutdown, undefined);
      }
      return;
    }
    this.#totals.add(event);
    this.#options.onEvent(event, index);
  }

  #died(index: number, slot: Slot, error: string): void {
    if (slot.finished) return;
    slot.finished = true;
    slot.died = true;
    slot.worker.terminate();
    // A change it will not answer; its replacement starts with the faults.
    for (const id of [...this.#faultChanges.keys()]) this.#faultsSet(id, slot);
    forgetWorker(this.#counts, index);
    this.#totals.lose(slot.open.size);
    this.#options.onWorkerDied(index, error, slot.open.size);
    // Each lost connection ends for the log and the page as well (the
    // totals counted them above).
    for (const [id, { remote, since }] of slot.open) {
      this.#options.onEvent({
        type: "close",
        id,
        remote,
        bytesIn: 0,
        bytesOut: 0,
        error: `lost: its Worker died (${error})`,
        reason: "error",
        durationMs: Date.now() - since,
      }, index);
    }
    slot.open.clear();
    if (this.#closing) {
      this.#checkFinished();
      return;
    }
    this.#spawn(index).catch(() => {}); // a failed replacement dies the same way
  }

  #finish(slot: Slot): void {
    slot.finished = true;
    slot.worker.terminate();
    for (const id of [...this.#faultChanges.keys()]) this.#faultsSet(id, slot);
    this.#checkFinished();
  }

  #checkFinished(): void {
    if (this.#slots.every((slot) => slot.finished)) {
      this.#allFinished.resolve();
    }
  }

  /** Workers that have not died. */
  #live(): number {
    return this.#slots.filter((slot) => !slot.died).length;
  }

  /** How the Workers free stalled TLS handshakes, if they speak TLS. */
  get tls(): "shutdown" | "relay" | undefined {
    return this.#tls;
  }
}

function tlsMode(pool: WorkerPool): { tls?: "shutdown" | "relay" } {
  return pool.tls === undefined ? {} : { tls: pool.tls };
}

function post(worker: Worker, message: ToWorker): void {
  worker.postMessage(message);
}

/** An error from a Worker as its class: Deno.errors.AddrInUse and so on. */
function rebuildError(name: string, message: string): Error {
  const classes = Deno.errors as unknown as Record<
    string,
    new (message: string) => Error
  >;
  const Class = classes[name];
  return Class === undefined ? new Error(message) : new Class(message);
}
