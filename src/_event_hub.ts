// Copyright the upcase authors. MIT license.
/**
 * What the live page sees: every {@linkcode ServerEvent} of every Worker goes
 * through an {@linkcode EventHub}, which keeps a bounded history (one small
 * record per connection, the socket calls of traced ones capped per
 * connection, the last {@linkcode CLOSED_KEPT} closed ones), per-second
 * totals for the graphs, and fans the events out to the pages' Server-Sent
 * Event streams. Each stream has a bounded queue: a page that does not read
 * is dropped, not buffered. Memory stays bounded however long the server
 * runs. Internal.
 *
 * @module
 */

import type { ServerEvent } from "./serve.ts";
import type { UdpEvent } from "./serve_udp.ts";

/** Closed connections kept for the list and their diagrams. */
export const CLOSED_KEPT = 100;
/** Open connections recorded; more are counted (the graphs) but not listed. */
export const OPEN_KEPT = 100;
/** Socket calls kept from the start of a connection. */
export const HEAD_ARROWS = 50;
/** Socket calls kept from the end of a connection. */
export const TAIL_ARROWS = 10;
/** Seconds of per-second totals kept for the graphs. */
export const GRAPH_SECONDS = 300;
/** Pages (event streams) served at once. */
export const MAX_PAGES = 16;
/**
 * Bytes of events waiting for one page before it is dropped as too slow.
 * The history a new page gets is made as it reads and does not count.
 */
export const MAX_QUEUED_BYTES = 1024 * 1024;
/** Server-wide events (listen, shutdown, accept errors) kept. */
const SERVER_EVENTS_KEPT = 10;
/** How much history one read of a page's stream gets at most, in characters. */
const HISTORY_CHUNK = 64 * 1024;

/**
 * What a page's stream fails with when the page is dropped for not reading
 * it: the HTTP server then closes its connection.
 */
export class SlowPageError extends Error {
  /** @param message Why. */
  constructor(message = "Dropped: the page did not read its events") {
    super(message);
    this.name = "SlowPageError";
  }
}

/** A JSON record, as `--log-format json` prints an event. */
export type EventRecord = Record<string, unknown>;

/** Options for {@linkcode EventHub}. */
export interface EventHubOptions {
  /**
   * Let byte previews through to the pages (the server runs with
   * `--trace`). Without it, `preview` is removed from every trace event and
   * from its text: the pages show sizes and timing, never payload.
   *
   * @default {false}
   */
  previews?: boolean;
  /**
   * The clock, in milliseconds since the epoch: for tests.
   *
   * @default {Date.now}
   */
  clock?: () => number;
}

/** One second of the graphs. */
export interface GraphSecond {
  /** The second, since the epoch. */
  t: number;
  /** Connections accepted in it. */
  connections: number;
  /** Bytes read from clients in it. */
  bytesIn: number;
  /** Bytes written to clients in it. */
  bytesOut: number;
  /** The most connections open at once in it. */
  open: number;
}

/** A connection as the hub keeps it: its records, as JSON text. */
interface Connection {
  /** Order of arrival, for the history. */
  seq: number;
  key: string;
  id: number | undefined;
  worker: number | undefined;
  /** The connect record, or the refuse or open-error one. */
  first: string | undefined;
  /** How many head records came before it (accept, PROXY, TLS). */
  firstAt: number;
  /** The first {@linkcode HEAD_ARROWS} trace records. */
  head: string[];
  /**
   * The last {@linkcode TAIL_ARROWS} trace records after the head (objects:
   * most are dropped before anyone asks for them).
   */
  tail: EventRecord[];
  /** Trace records dropped between head and tail, and their bytes. */
  skipped: number;
  skippedIn: number;
  skippedOut: number;
  /** Trace records past the head (pages get them at the end), and bytes. */
  pastHead: number;
  pastHeadIn: number;
  pastHeadOut: number;
  /** Bytes the trace records counted (the graphs count the rest at close). */
  tracedIn: number;
  tracedOut: number;
  /** The close record. */
  last: string | undefined;
  /** Whether a connect event was seen (a second one is a new connection). */
  connected: boolean;
}

const encoder = new TextEncoder();

/**
 * The events of a running server, kept for and streamed to the live page.
 *
 * @example Usage
 * ```ts
 * import { EventHub } from "./_event_hub.ts";
 * import { assertEquals } from "@std/assert";
 *
 * const hub = new EventHub();
 * const remote = { transport: "tcp", hostname: "127.0.0.1", port: 5000 } as const;
 * hub.add({ type: "connect", id: 1, remote });
 * assertEquals(hub.open, 1);
 * const stream = hub.subscribe();
 * assertEquals(hub.watching, true);
 * const text = new TextDecoder().decode((await stream!.getReader().read()).value);
 * assertEquals(text.startsWith("retry:"), true);
 * hub.close();
 * assertEquals(hub.watching, false);
 * ```
 */
export class EventHub {
  #previews: boolean;
  #clock: () => number;
  #seq = 0;
  #open = new Map<string, Connection>();
  #closed: Connection[] = [];
  #server: string[] = [];
  #pages = new Set<PageStream>();
  #listeners: ((watching: boolean) => void)[] = [];
  #openCount = 0;
  #synthetic = 0;
  #graph = new Graph();
  #ticker: ReturnType<typeof setInterval> | undefined;
  #ticked: number;
  /** Connections whose skipped count changed since the last tick. */
  #dirty = new Set<Connection>();
  #closedHub = false;

  /** @param options Previews, and the clock. */
  constructor(options: EventHubOptions = {}) {
    this.#previews = options.previews ?? false;
    this.#clock = options.clock ?? Date.now;
    this.#ticked = Math.floor(this.#clock() / 1000) - 1;
  }

  /** Whether a page is connected (then the server traces new connections). */
  get watching(): boolean {
    return this.#pages.size > 0;
  }

  /** Pages connected now. */
  get pages(): number {
    return this.#pages.size;
  }

  /** Connections open now, as the events tell. */
  get open(): number {
    return this.#openCount;
  }

  /**
   * Calls `listener` each time {@linkcode EventHub.watching} changes.
   *
   * @param listener Gets the new value.
   */
  onWatchingChange(listener: (watching: boolean) => void): void {
    this.#listeners.push(listener);
  }

  /**
   * Takes one event of the server (of Worker `worker`, with --workers).
   * Never throws.
   *
   * @param event What happened.
   * @param worker The Worker it happened in, if any.
   */
  add(event: ServerEvent, worker?: number): void {
    const now = this.#clock();
    const graph = this.#graph.at(now, this.#openCount);
    const record = this.#record(event, worker, now);
    switch (event.type) {
      case "connect": {
        this.#openCount++;
        graph.connections++;
        graph.open = Math.max(graph.open, this.#openCount);
        const key = keyOf(event.id, worker);
        let conn = this.#open.get(key);
        if (conn?.connected === true) {
          // The same number again: a replaced Worker counts from 1 again.
          this.#retire(conn);
          conn = undefined;
        }
        if (conn === undefined) {
          if (this.#open.size >= OPEN_KEPT) return;
          conn = this.#connection(key, event.id, worker);
          this.#open.set(key, conn);
        }
        conn.connected = true;
        conn.first = JSON.stringify(record);
        conn.firstAt = conn.head.length;
        this.#broadcast(conn.first);
        return;
      }
      case "trace": {
        const key = keyOf(event.id, worker);
        let conn = this.#open.get(key);
        if (conn !== undefined && conn.connected && event.call === "accept") {
          this.#retire(conn);
          conn = undefined;
        }
        if (conn === undefined) {
          // The accept (and PROXY, TLS) calls come before the connect event.
          if (this.#open.size >= OPEN_KEPT) return;
          conn = this.#connection(key, event.id, worker);
          this.#open.set(key, conn);
        }
        const bytes = event.bytes ?? 0;
        if (event.call === "read") {
          conn.tracedIn += bytes;
          graph.bytesIn += bytes;
        } else if (event.call === "write") {
          conn.tracedOut += bytes;
          graph.bytesOut += bytes;
        }
        if (conn.head.length < HEAD_ARROWS) {
          const text = JSON.stringify(record);
          conn.head.push(text);
          this.#broadcast(text);
          return;
        }
        conn.pastHead++;
        if (event.call === "read") conn.pastHeadIn += bytes;
        if (event.call === "write") conn.pastHeadOut += bytes;
        conn.tail.push(record);
        if (conn.tail.length > TAIL_ARROWS) {
          const dropped = conn.tail.shift()!;
          conn.skipped++;
          const n = typeof dropped.bytes === "number" ? dropped.bytes : 0;
          if (dropped.call === "read") conn.skippedIn += n;
          if (dropped.call === "write") conn.skippedOut += n;
        }
        this.#dirty.add(conn);
        return;
      }
      case "close": {
        this.#openCount = Math.max(0, this.#openCount - 1);
        const key = keyOf(event.id, worker);
        const conn = this.#open.get(key) ??
          this.#connection(key, event.id, worker);
        this.#open.delete(key);
        graph.bytesIn += Math.max(0, event.bytesIn - conn.tracedIn);
        graph.bytesOut += Math.max(0, event.bytesOut - conn.tracedOut);
        if (conn.pastHead > 0) {
          // The end of a long connection: what was left out, then the tail.
          this.#broadcast(this.#skippedRecord(conn, false));
          for (const tail of conn.tail) this.#broadcast(JSON.stringify(tail));
        }
        this.#dirty.delete(conn);
        conn.last = JSON.stringify(record);
        this.#broadcast(conn.last);
        this.#keepClosed(conn);
        return;
      }
      case "refuse":
      case "open-error": {
        const conn = this.#connection(
          `x${++this.#synthetic}`,
          undefined,
          worker,
        );
        conn.first = JSON.stringify(record);
        this.#broadcast(conn.first);
        this.#keepClosed(conn);
        return;
      }
      default: {
        const text = JSON.stringify(record);
        this.#server.push(text);
        if (this.#server.length > SERVER_EVENTS_KEPT) this.#server.shift();
        this.#broadcast(text);
      }
    }
  }

  /**
   * Takes one event of the UDP server. Each source address and port is a
   * flow, listed like a connection: a `udp-flow` record, then its first
   * {@linkcode HEAD_ARROWS} datagrams (`udp-trace` records: `recvfrom` and
   * `sendto`); past {@linkcode OPEN_KEPT} flows the least recently active
   * one is forgotten (a `udp-forgotten` record: UDP has no close). The
   * first drop of each reason and the new-source lines go with the server's
   * events. Never throws.
   *
   * @param event What happened.
   */
  addDatagram(event: UdpEvent): void {
    const now = this.#clock();
    const graph = this.#graph.at(now, this.#openCount);
    const time = new Date(now).toISOString();
    if (event.type !== "udp-trace") {
      if (event.type === "udp-drop" && !event.first) return;
      if (event.type === "udp-source" && !event.logged) return;
      const text = JSON.stringify(this.#record(event, undefined, now));
      this.#server.push(text);
      if (this.#server.length > SERVER_EVENTS_KEPT) this.#server.shift();
      this.#broadcast(text);
      return;
    }
    const remote = formatAddr(event.remote);
    const key = `u:${remote}`;
    let conn = this.#open.get(key);
    if (conn === undefined) {
      if (this.#open.size >= OPEN_KEPT) {
        // The least recently active flow: first in the map's order.
        const oldest = this.#open.values().next().value;
        if (oldest !== undefined) this.#forget(oldest, time);
      }
      conn = this.#connection(key, undefined, undefined);
      conn.connected = true;
      conn.first = JSON.stringify({ time, event: "udp-flow", remote });
      this.#openCount++;
      graph.connections++;
      graph.open = Math.max(graph.open, this.#openCount);
      this.#broadcast(conn.first);
    } else {
      // Most recently active last.
      this.#open.delete(key);
    }
    this.#open.set(key, conn);
    if (event.call === "recvfrom") {
      conn.tracedIn += event.bytes;
      graph.bytesIn += event.bytes;
    } else {
      conn.tracedOut += event.bytes;
      graph.bytesOut += event.bytes;
    }
    if (conn.head.length >= HEAD_ARROWS) return;
    const text = JSON.stringify({
      time,
      event: "udp-trace",
      call: event.call,
      remote,
      bytes: event.bytes,
      ...(event.kept === undefined ? {} : { kept: event.kept }),
    });
    conn.head.push(text);
    this.#broadcast(text);
  }

  /** A UDP flow leaves the open list: it was the quietest. */
  #forget(conn: Connection, time: string): void {
    this.#openCount = Math.max(0, this.#openCount - 1);
    this.#open.delete(conn.key);
    conn.last = JSON.stringify({
      time,
      event: "udp-forgotten",
      remote: conn.key.slice(2),
      bytesIn: conn.tracedIn,
      bytesOut: conn.tracedOut,
    });
    this.#broadcast(conn.last);
    this.#keepClosed(conn);
  }

  /**
   * A new page's event stream: first a `hello` event (the graphs' last
   * {@linkcode GRAPH_SECONDS} seconds), then the history (the records of
   * the kept connections, oldest first), a `live` event, then every new
   * event as it happens and a `tick` event each second. Records are
   * `data:` lines of JSON, as `--log-format json` prints them; a `skipped`
   * record stands for socket calls left out of a long connection.
   *
   * @param signal Ends the stream when aborted (the client went away).
   * @returns The stream, or `undefined` when {@linkcode MAX_PAGES} are
   *   connected already (or the hub is closed).
   */
  subscribe(signal?: AbortSignal): ReadableStream<Uint8Array> | undefined {
    if (this.#closedHub || this.#pages.size >= MAX_PAGES) return undefined;
    if (signal?.aborted) return undefined;
    const page = new PageStream(this.#history(), () => this.#drop(page));
    this.#pages.add(page);
    signal?.addEventListener("abort", () => page.end(), { once: true });
    if (this.#pages.size === 1) {
      this.#ticked = Math.floor(this.#clock() / 1000) - 1;
      this.#ticker = setInterval(() => this.#tick(), 1000);
      Deno.unrefTimer(this.#ticker);
      this.#changed();
    }
    return page.readable;
  }

  /**
   * Ends every page's stream and takes no new ones: for shutdown, so the
   * HTTP server can stop.
   */
  close(): void {
    this.#closedHub = true;
    for (const page of [...this.#pages]) page.end();
  }

  /** The last {@linkcode GRAPH_SECONDS} complete seconds, oldest first. */
  graph(): GraphSecond[] {
    const now = Math.floor(this.#clock() / 1000);
    return this.#graph.range(now - GRAPH_SECONDS, now - 1, this.#openCount);
  }

  #record(
    event: ServerEvent | UdpEvent,
    worker: number | undefined,
    now: number,
  ) {
    const record: EventRecord = {
      time: new Date(now).toISOString(),
      event: event.type,
    };
    for (const [key, value] of Object.entries(event)) {
      if (key === "type" || value === undefined) continue;
      record[key] = key === "remote" || key === "addr" || key === "by"
        ? formatAddr(value as Deno.Addr)
        : value;
    }
    if (worker !== undefined) record.worker = worker;
    if (event.type === "trace" && !this.#previews && "preview" in record) {
      delete record.preview;
      if (event.preview !== undefined) {
        record.text = event.text.replace(` ${event.preview}`, "");
      }
    }
    return record;
  }

  #connection(
    key: string,
    id: number | undefined,
    worker: number | undefined,
  ): Connection {
    return {
      seq: ++this.#seq,
      key,
      id,
      worker,
      first: undefined,
      firstAt: 0,
      head: [],
      tail: [],
      skipped: 0,
      skippedIn: 0,
      skippedOut: 0,
      pastHead: 0,
      pastHeadIn: 0,
      pastHeadOut: 0,
      tracedIn: 0,
      tracedOut: 0,
      last: undefined,
      connected: false,
    };
  }

  /** An open record whose number came again: it is kept as it was. */
  #retire(conn: Connection): void {
    this.#open.delete(conn.key);
    this.#dirty.delete(conn);
    this.#keepClosed(conn);
  }

  #keepClosed(conn: Connection): void {
    this.#closed.push(conn);
    if (this.#closed.length > CLOSED_KEPT) this.#closed.shift();
  }

  /**
   * A `skipped` record: the socket calls left out between the head and the
   * tail that follows it, or (`live`, for a page's running count) every
   * call past the head.
   */
  #skippedRecord(conn: Connection, live: boolean): string {
    const record: EventRecord = {
      time: new Date(this.#clock()).toISOString(),
      event: "skipped",
      id: conn.id,
      count: live ? conn.pastHead : conn.skipped,
      bytesIn: live ? conn.pastHeadIn : conn.skippedIn,
      bytesOut: live ? conn.pastHeadOut : conn.skippedOut,
    };
    if (conn.worker !== undefined) record.worker = conn.worker;
    return JSON.stringify(record);
  }

  /** Every kept record in order, as SSE text, made as the page reads. */
  *#history(): Generator<string> {
    const graph = this.graph();
    yield `retry: 2000\n\nevent: hello\ndata: ${
      JSON.stringify({
        time: new Date(this.#clock()).toISOString(),
        previews: this.#previews,
        seconds: GRAPH_SECONDS,
        limits: {
          closed: CLOSED_KEPT,
          open: OPEN_KEPT,
          head: HEAD_ARROWS,
          tail: TAIL_ARROWS,
        },
        graph,
      })
    }\n\n`;
    // A copy of the lists now: the connections go on changing meanwhile.
    const lines: string[] = [...this.#server];
    const conns = [...this.#closed, ...this.#open.values()].sort((a, b) =>
      a.seq - b.seq
    );
    for (const conn of conns) {
      lines.push(...conn.head.slice(0, conn.firstAt));
      if (conn.first !== undefined) lines.push(conn.first);
      lines.push(...conn.head.slice(conn.firstAt));
      if (conn.pastHead > 0) {
        lines.push(
          this.#skippedRecord(conn, false),
          ...conn.tail.map((tail) => JSON.stringify(tail)),
        );
      }
      if (conn.last !== undefined) lines.push(conn.last);
    }
    let chunk = "";
    for (const line of lines) {
      chunk += `data: ${line}\n\n`;
      if (chunk.length >= HISTORY_CHUNK) {
        yield chunk;
        chunk = "";
      }
    }
    yield `${chunk}event: live\ndata: {}\n\n`;
  }

  #broadcast(line: string): void {
    if (this.#pages.size === 0) return;
    const text = `data: ${line}\n\n`;
    for (const page of this.#pages) page.push(text);
  }

  #tick(): void {
    const now = Math.floor(this.#clock() / 1000);
    const from = Math.max(this.#ticked + 1, now - GRAPH_SECONDS);
    let text = "";
    for (const second of this.#graph.range(from, now - 1, this.#openCount)) {
      text += `event: tick\ndata: ${JSON.stringify(second)}\n\n`;
    }
    this.#ticked = Math.max(this.#ticked, now - 1);
    for (const conn of this.#dirty) {
      text += `data: ${this.#skippedRecord(conn, true)}\n\n`;
    }
    this.#dirty.clear();
    if (text === "") return;
    for (const page of this.#pages) page.push(text);
  }

  #drop(page: PageStream): void {
    if (!this.#pages.delete(page)) return;
    if (this.#pages.size === 0) {
      clearInterval(this.#ticker);
      this.#ticker = undefined;
      this.#changed();
    }
  }

  #changed(): void {
    const watching = this.watching;
    for (const listener of this.#listeners) listener(watching);
  }
}

/**
 * `IP:PORT`, `[IPv6]:PORT` or a socket path, as the JSON log writes an
 * address (the CLI's `formatAddr`; not imported, so that the side channel
 * loads without the CLI's dependencies).
 */
function formatAddr(addr: Deno.Addr): string {
  if ("hostname" in addr) {
    return addr.hostname.includes(":")
      ? `[${addr.hostname}]:${addr.port}`
      : `${addr.hostname}:${addr.port}`;
  }
  return "path" in addr ? addr.path : addr.transport;
}

/** `id` or `worker:id`: ids are per Worker. */
function keyOf(id: number, worker: number | undefined): string {
  return worker === undefined ? `${id}` : `${worker}:${id}`;
}

/** A second of the ring, with the open count when it began. */
interface Slot extends GraphSecond {
  start: number;
}

/** Per-second totals in a ring of {@linkcode GRAPH_SECONDS} slots. */
class Graph {
  #slots: Slot[] = Array.from(
    { length: GRAPH_SECONDS },
    () => ({
      t: -1,
      connections: 0,
      bytesIn: 0,
      bytesOut: 0,
      open: 0,
      start: 0,
    }),
  );

  /**
   * The slot of the second `ms` falls in, emptied if it held an older
   * second; `open` is the open count before the event.
   */
  at(ms: number, open: number): GraphSecond {
    const t = Math.floor(ms / 1000);
    const slot = this.#slots[t % GRAPH_SECONDS]!;
    if (slot.t !== t) {
      slot.t = t;
      slot.connections = slot.bytesIn = slot.bytesOut = 0;
      slot.open = slot.start = open;
    }
    return slot;
  }

  /**
   * Copies of the seconds `from` to `to`, with zeros (and the open count
   * then) for the seconds nothing happened in.
   */
  range(from: number, to: number, openNow: number): GraphSecond[] {
    const seconds: GraphSecond[] = [];
    let open = openNow;
    for (let t = to; t >= from; t--) {
      const slot = this.#slots[t % GRAPH_SECONDS]!;
      if (slot.t === t) {
        const { start, ...second } = slot;
        seconds.push(second);
        open = start;
      } else {
        seconds.push({ t, connections: 0, bytesIn: 0, bytesOut: 0, open });
      }
    }
    return seconds.reverse();
  }
}

/**
 * One page's Server-Sent Events: the history, made as the page reads, then
 * the live events, queued up to {@linkcode MAX_QUEUED_BYTES}.
 */
class PageStream {
  readonly readable: ReadableStream<Uint8Array>;
  #history: Iterator<string>;
  #historyDone = false;
  #queue: string[] = [];
  #bytes = 0;
  #wake: (() => void) | undefined;
  #ended = false;
  #controller!: ReadableStreamDefaultController<Uint8Array>;
  #onEnd: () => void;

  constructor(history: Iterator<string>, onEnd: () => void) {
    this.#history = history;
    this.#onEnd = onEnd;
    this.readable = new ReadableStream<Uint8Array>({
      start: (controller) => {
        this.#controller = controller;
      },
      pull: (controller) => this.#pull(controller),
      cancel: () => {
        this.#ended = true;
        this.#wake?.();
        this.#onEnd();
      },
    }, { highWaterMark: 0 });
  }

  /** Queues live text; drops the page when too much is waiting. */
  push(text: string): void {
    if (this.#ended) return;
    this.#bytes += text.length;
    if (this.#bytes > MAX_QUEUED_BYTES) {
      // Too slow: end it now, without what is queued.
      this.#ended = true;
      this.#queue = [];
      this.#wake?.();
      this.#onEnd();
      try {
        this.#controller.error(new SlowPageError());
      } catch {
        // Already closed.
      }
      return;
    }
    this.#queue.push(text);
    this.#wake?.();
  }

  /** Sends what is queued, then ends the stream (shutdown, or gone). */
  end(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#onEnd();
    this.#wake?.();
  }

  async #pull(
    controller: ReadableStreamDefaultController<Uint8Array>,
  ): Promise<void> {
    if (!this.#historyDone && !this.#ended) {
      const next = this.#history.next();
      if (!next.done) {
        controller.enqueue(encoder.encode(next.value));
        return;
      }
      this.#historyDone = true;
    }
    while (this.#queue.length === 0 && !this.#ended) {
      await new Promise<void>((resolve) => this.#wake = resolve);
      this.#wake = undefined;
    }
    if (this.#queue.length > 0) {
      const text = this.#queue.join("");
      this.#queue = [];
      this.#bytes = 0;
      controller.enqueue(encoder.encode(text));
    }
    if (this.#ended) {
      try {
        controller.close();
      } catch {
        // Errored (dropped) or cancelled already.
      }
    }
  }
}
