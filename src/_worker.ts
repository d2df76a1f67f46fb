// Copyright the upcase authors. MIT license.
// One Worker of a --workers server: the same server as without workers, on
// its own SO_REUSEPORT listener, with a connection limit shared with the
// others. It posts every event to the main thread, which logs them and adds
// them up. See _worker_pool.ts for the messages. Internal.

/// <reference lib="deno.worker" />

import { type ServeOptions, type Server, serveTcp } from "./serve.ts";
import { SharedLimit } from "./_conn_limit.ts";
import type { FromWorker, ToWorker } from "./_worker_pool.ts";

let server: Server | undefined;
/** Bytes of the connections closed so far, from this Worker's events. */
let closedIn = 0;
let closedOut = 0;

/** How often the bytes of open connections are posted, in milliseconds. */
const OPEN_BYTES_EVERY_MS = 500;

function post(message: FromWorker): void {
  self.postMessage(message);
}

self.onmessage = (event: MessageEvent<ToWorker>) => {
  const message = event.data;
  switch (message.type) {
    case "start": {
      const { traceFlag } = message;
      const traceAlways = message.options.trace === true;
      const options: ServeOptions = {
        ...message.options,
        trace: () => traceAlways || Atomics.load(traceFlag, 0) === 1,
        onEvent: (e) => {
          if (e.type === "close") {
            closedIn += e.bytesIn;
            closedOut += e.bytesOut;
          }
          post({ type: "event", event: e });
        },
      };
      try {
        server = serveTcp(options, {
          reusePort: true,
          limit: new SharedLimit(
            message.counts,
            message.worker,
            message.options.maxConns ?? 0,
          ),
        });
      } catch (err: unknown) {
        post({
          type: "failed",
          name: err instanceof Error ? err.name : "Error",
          message: err instanceof Error ? err.message : String(err),
        });
        return;
      }
      // What long connections have moved so far, for /metrics.
      const timer = setInterval(() => {
        const stats = server!.stats;
        post({
          type: "open-bytes",
          bytesIn: stats.bytesIn - closedIn,
          bytesOut: stats.bytesOut - closedOut,
        });
      }, OPEN_BYTES_EVERY_MS);
      server.finished.then(() => {
        clearInterval(timer);
        post({ type: "finished" });
      });
      break;
    }
    case "shutdown":
      server?.shutdown({ grace: message.grace });
      break;
    case "set-faults":
      // Checked by the main thread already.
      server?.setFaults(message.faults);
      post({ type: "faults-set", id: message.id });
      break;
    case "crash":
      // For the pool's tests: an uncaught error, as a bug would throw.
      setTimeout(() => {
        throw new Error("Worker made to fail on purpose");
      });
      break;
  }
};
