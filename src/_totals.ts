// Copyright the upcase authors. MIT license.
// A server's counters, added up from its events: what the main thread of a
// --workers server knows of all its Workers (each posts its events), for the
// summary and /metrics. Internal.

import { emptyStats, type ServerEvent, type ServerStats } from "./serve.ts";
import { DurationHistogram } from "./metrics.ts";

/** Counters kept from {@linkcode ServerEvent}s. */
export class ServerTotals {
  #stats: ServerStats = emptyStats();
  #durations = new DurationHistogram();

  /** Counts one event. */
  add(event: ServerEvent): void {
    const stats = this.#stats;
    switch (event.type) {
      case "connect":
        stats.accepted++;
        stats.active++;
        for (const kind of event.faultKinds ?? []) {
          stats.faultsInjected[kind] = (stats.faultsInjected[kind] ?? 0) + 1;
        }
        break;
      case "accept-pause":
        stats.faultsInjected["accept-pause"] =
          (stats.faultsInjected["accept-pause"] ?? 0) + 1;
        break;
      case "close":
        stats.active--;
        stats.bytesIn += event.bytesIn;
        stats.bytesOut += event.bytesOut;
        if (event.reason === "reset" || event.reason === "error") {
          stats.errors++;
        }
        if (event.cutOff === "idle-timeout") stats.idleClosed++;
        if (event.cutOff === "shutdown") stats.shutdownClosed++;
        stats.closed[event.reason]++;
        this.#durations.observe(Math.max(0, event.durationMs) / 1000);
        break;
      case "refuse":
        stats.refused++;
        break;
      case "accept-reset":
        stats.acceptResets++;
        break;
      case "relay-stray":
        stats.relayStrays++;
        break;
      case "relay-moved":
        stats.relayMoves++;
        break;
      case "open-error":
        if (event.reason === "handshake") stats.handshakeErrors++;
        if (event.reason === "header") stats.headerErrors++;
        stats.closed[event.reason]++;
        break;
    }
  }

  /**
   * Forgets `open` connections of a Worker that died: they were lost.
   *
   * @param open How many it had open.
   */
  lose(open: number): void {
    this.#stats.active -= open;
    this.#stats.errors += open;
    this.#stats.closed.error += open;
  }

  /** A snapshot. */
  get stats(): ServerStats {
    return {
      ...this.#stats,
      closed: { ...this.#stats.closed },
      faultsInjected: { ...this.#stats.faultsInjected },
      duration: this.#durations.snapshot(),
    };
  }
}
