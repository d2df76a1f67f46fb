// Copyright the upcase authors. MIT license.
/**
 * The live page `GET /` serves: one self-contained HTML file (CSS, plain
 * JavaScript, SVG drawn by it), with nothing fetched from elsewhere, so it
 * works offline and inside a compiled executable. It reads `/events` (see
 * `EventHub.subscribe` in `_event_hub.ts`) and shows the open and recently closed
 * connections, one connection's socket calls as a sequence diagram, and
 * graphs of the last five minutes. Internal.
 *
 * @module
 */

/** The page, as served. */
export const PAGE: string = String.raw`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>upcase: live connections</title>
<link rel="icon" href="data:,">
<style>
:root {
  --fg: #1b1f24; --muted: #57606a; --line: #d0d7de; --bg: #fff; --panel: #f6f8fa;
  --in: #0550ae; --out: #8250df; --bad: #a40e26; --warn: #7d4e00; --ok: #116329; --fault: #bc4c00;
  font: 14px/1.4 system-ui, "DejaVu Sans", sans-serif; color: var(--fg); background: var(--bg);
}
body { margin: 0; padding: 12px 16px 24px; }
h1 { font-size: 20px; margin: 0; }
h2 { font-size: 16px; margin: 0 0 6px; }
header { display: flex; flex-wrap: wrap; gap: 4px 16px; align-items: baseline; margin-bottom: 10px; }
header p { margin: 0; color: var(--muted); }
#status { font-weight: 600; }
#status[data-state="live"] { color: var(--ok); }
#status[data-state="lost"] { color: var(--bad); }
#graphs { display: grid; grid-template-columns: repeat(3, minmax(0, 1fr)); gap: 12px; margin-bottom: 12px; }
figure { margin: 0; padding: 8px 10px; background: var(--panel); border: 1px solid var(--line); border-radius: 6px; }
figcaption { font-weight: 600; }
figure svg { display: block; width: 100%; height: auto; }
figure p { margin: 2px 0 0; color: var(--muted); font-size: 13px; }
.axis { stroke: var(--line); stroke-width: 1; }
.tick { fill: var(--muted); font-size: 10px; }
.series { fill: none; stroke-width: 1.6; stroke-linejoin: round; }
.s-conn { stroke: var(--fg); }
.s-in { stroke: var(--in); }
.s-out { stroke: var(--out); stroke-dasharray: 4 3; }
main { display: grid; grid-template-columns: minmax(0, 1.15fr) minmax(0, 1fr); gap: 16px; align-items: start; }
#counts { margin: 0 0 6px; color: var(--muted); }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 3px 6px; border-bottom: 1px solid var(--line); white-space: nowrap; }
th { font-size: 12px; color: var(--muted); font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.why { white-space: normal; }
tbody tr { cursor: pointer; }
tbody tr:hover { background: var(--panel); }
tbody tr[aria-selected="true"] { background: #ddf4ff; }
tr button { font: inherit; border: 0; background: none; padding: 0; color: var(--in); cursor: pointer; text-decoration: underline; }
tr[aria-selected="true"] button::before { content: "\25B6\00A0"; }
.reason-open { color: var(--ok); }
.reason-reset, .reason-error, .reason-handshake, .reason-header { color: var(--bad); }
.reason-idle-timeout, .reason-shutdown, .reason-refused { color: var(--warn); }
.fault, .reason-fault { color: var(--fault); fill: var(--fault); }
line.fault { stroke: var(--fault); }
#faults { color: var(--fault); }
#diagram { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: 8px 10px; }
#d-sub { margin: 0 0 4px; color: var(--muted); }
#d-svg { display: block; width: 100%; height: auto; background: var(--bg); border: 1px solid var(--line); }
.life { stroke: var(--muted); stroke-width: 1.5; stroke-dasharray: 6 4; }
.head { font-weight: 700; font-size: 13px; text-anchor: middle; }
.arrow { stroke-width: 1.6; }
.c2s { stroke: var(--in); }
.s2c { stroke: var(--out); }
.lbl { font-size: 12px; font-weight: 600; text-anchor: middle; }
.call { font: 11px "DejaVu Sans Mono", monospace; text-anchor: middle; fill: var(--muted); }
.when { font: 10px "DejaVu Sans Mono", monospace; fill: var(--muted); text-anchor: end; }
.note { font-size: 12px; fill: var(--fg); }
.gap { font-size: 12px; font-style: italic; fill: var(--muted); text-anchor: middle; }
.bad { fill: var(--bad); }
.sr { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
@media (max-width: 900px) { #graphs, main { grid-template-columns: 1fr; } }
</style>
</head>
<body>
<header>
  <h1>upcase: live connections</h1>
  <p id="status" role="status" data-state="connecting">Connecting to the event stream…</p>
  <p id="server"></p>
  <p id="mode"></p>
  <p id="faults"></p>
</header>
<section id="graphs" aria-label="The last five minutes">
  <figure><figcaption>Connections per second</figcaption><svg id="g-conn" viewBox="0 0 340 96" role="img" aria-labelledby="g-conn-text"></svg><p id="g-conn-text"></p></figure>
  <figure><figcaption>Bytes per second: in (solid), out (dashed)</figcaption><svg id="g-bytes" viewBox="0 0 340 96" role="img" aria-labelledby="g-bytes-text"></svg><p id="g-bytes-text"></p></figure>
  <figure><figcaption>Open connections</figcaption><svg id="g-open" viewBox="0 0 340 96" role="img" aria-labelledby="g-open-text"></svg><p id="g-open-text"></p></figure>
</section>
<main>
  <section id="list" aria-labelledby="list-title">
    <h2 id="list-title">Connections</h2>
    <p id="counts">No connection yet.</p>
    <table>
      <thead><tr><th scope="col">#</th><th scope="col">Client</th><th scope="col">In</th><th scope="col">Out</th><th scope="col">Duration</th><th scope="col">How it ended</th></tr></thead>
      <tbody id="rows"></tbody>
    </table>
  </section>
  <section id="diagram" aria-labelledby="d-title">
    <h2 id="d-title">Sequence diagram</h2>
    <p id="d-sub">Choose a connection from the list to see its socket calls.</p>
    <svg id="d-svg" viewBox="0 0 560 60" role="img" aria-labelledby="d-title d-sub"></svg>
    <ol id="d-text" class="sr" aria-label="The diagram as text"></ol>
  </section>
</main>
<script>
"use strict";
const SVG = "http://www.w3.org/2000/svg";
const state = {
  conns: new Map(),   // key -> connection
  closed: [],         // keys, oldest first
  limits: { closed: 100, open: 100, head: 50, tail: 10 },
  seconds: 300,
  series: [],         // { t, connections, bytesIn, bytesOut, open }
  previews: false,
  selected: undefined,
  server: "",
  faults: [],         // the active faults, as --fault strings
  faultSeed: undefined,
  shutdown: "",
  synthetic: 0,
  live: false,
};

function $(id) { return document.getElementById(id); }

function el(name, attrs, text) {
  const node = document.createElementNS(SVG, name);
  for (const k in attrs) node.setAttribute(k, String(attrs[k]));
  if (text !== undefined) node.textContent = text;
  return node;
}

function plural(n, word) { return n + " " + word + (n === 1 ? "" : "s"); }

function bytes(n) {
  if (n === undefined) return "…";
  if (n < 1000) return n + " B";
  const units = ["kB", "MB", "GB", "TB"];
  let v = n, i = -1;
  do { v /= 1000; i++; } while (v >= 1000 && i < units.length - 1);
  return v.toFixed(v < 10 ? 1 : 0) + " " + units[i];
}

function duration(ms) {
  if (ms === undefined) return "…";
  if (ms < 1) return ms.toFixed(2) + " ms";
  if (ms < 1000) return ms.toFixed(ms < 10 ? 1 : 0) + " ms";
  if (ms < 60000) return (ms / 1000).toFixed(1) + " s";
  return Math.floor(ms / 60000) + " min " + Math.round((ms % 60000) / 1000) + " s";
}

/** The faults that hit a connection, in words (from its close), or "". */
function faultWords(c) {
  if (c.faults) return c.faults.join("; ");
  return c.faultKinds ? c.faultKinds.join(", ") : "";
}

/** The words of the fault of the given kind that hit c: "reset after 100 B". */
function faultSaid(c, kind) {
  return (c.faults || []).find((f) => f.replace(/ /g, "-").startsWith(kind) || f.startsWith(kind)) || "";
}

function keyOf(rec) { return (rec.worker === undefined ? "" : rec.worker + ":") + rec.id; }

function label(c) { return "#" + (c.worker === undefined ? "" : c.worker + ":") + (c.id === undefined ? "–" : c.id); }

function newConn(key, rec) {
  return {
    key, id: rec.id, worker: rec.worker, remote: rec.remote || "", opened: Date.parse(rec.time),
    check: false, connected: false, head: [], tail: [], skipped: undefined, end: undefined, first: undefined,
    tracedIn: 0, tracedOut: 0, traced: false,
  };
}

function retire(c, why) {
  if (c.end === undefined) c.end = { event: "lost", time: new Date().toISOString(), why };
  state.conns.delete(c.key);
  c.key = c.key + "~" + (++state.synthetic);
  state.conns.set(c.key, c);
  keepClosed(c);
}

function keepClosed(c) {
  state.closed.push(c.key);
  while (state.closed.length > state.limits.closed) {
    const old = state.closed.shift();
    state.conns.delete(old);
    if (state.selected === old) state.selected = undefined;
  }
}

function openCount() {
  let n = 0;
  for (const c of state.conns.values()) if (c.end === undefined) n++;
  return n;
}

function handle(rec) {
  switch (rec.event) {
    case "listen":
      state.server = "Serving on " + rec.addr + (rec.tls ? " (TLS)" : "");
      if (rec.faults) { state.faults = rec.faults.specs; state.faultSeed = rec.faults.seed; }
      return;
    case "faults": state.faults = rec.faults; state.faultSeed = rec.seed; return;
    case "udp-listen": state.server = "Answering datagrams on " + rec.addr + " (UDP): each source address and port is listed as a flow"; return;
    case "shutdown": state.shutdown = "Shutting down: up to " + (rec.graceMs / 1000) + " s for " + plural(rec.open, "open connection"); return;
    case "accept-error": state.server = "accept failed: " + rec.error; return;
    case "udp-flow": {
      // A UDP source address and port: listed like a connection.
      const key = "u:" + rec.remote;
      if (openCount() >= state.limits.open) return;
      const c = newConn(key, rec);
      c.udp = true; c.connected = true; c.traced = true;
      state.conns.set(key, c);
      return;
    }
    case "udp-trace": {
      const c = state.conns.get("u:" + rec.remote);
      if (c === undefined) return;
      if (rec.call === "recvfrom") c.tracedIn += rec.bytes || 0;
      else c.tracedOut += rec.bytes || 0;
      if (c.head.length < state.limits.head) c.head.push(rec);
      else c.more = (c.more || 0) + 1;
      return;
    }
    case "udp-forgotten": {
      const c = state.conns.get("u:" + rec.remote);
      if (c === undefined) return;
      c.end = rec;
      state.conns.delete(c.key);
      c.key = c.key + "~" + (++state.synthetic);
      state.conns.set(c.key, c);
      keepClosed(c);
      return;
    }
    case "refuse":
    case "open-error": {
      const key = "x" + (++state.synthetic);
      const c = newConn(key, rec);
      c.end = rec; c.first = rec;
      state.conns.set(key, c); keepClosed(c);
      return;
    }
  }
  if (rec.id === undefined) return;
  const key = keyOf(rec);
  let c = state.conns.get(key);
  if (c && (rec.event === "connect" || (rec.event === "trace" && rec.call === "accept")) && c.connected) {
    retire(c, "its number came again (a replaced Worker)");
    c = undefined;
  }
  if (c === undefined) {
    if (rec.event === "skipped") return;
    if (rec.event !== "close" && openCount() >= state.limits.open) return;
    c = newConn(key, rec);
    state.conns.set(key, c);
  }
  switch (rec.event) {
    case "connect":
      c.connected = true; c.remote = rec.remote; c.check = rec.check === true; c.opened = Date.parse(rec.time);
      if (rec.faultKinds) c.faultKinds = rec.faultKinds;
      return;
    case "trace": {
      c.traced = true;
      if (rec.call === "read") c.tracedIn += rec.bytes || 0;
      if (rec.call === "write") c.tracedOut += rec.bytes || 0;
      if (c.skipped === undefined && c.head.length < state.limits.head) c.head.push(rec);
      else {
        c.tail.push(rec);
        if (c.tail.length > state.limits.tail) {
          c.tail.shift();
          c.skipped = c.skipped || { count: 0, bytesIn: 0, bytesOut: 0 };
          c.skipped.count++;
        }
      }
      return;
    }
    case "skipped":
      c.tracedIn += rec.bytesIn - (c.skipped ? c.skipped.bytesIn : 0);
      c.tracedOut += rec.bytesOut - (c.skipped ? c.skipped.bytesOut : 0);
      c.skipped = { count: rec.count, bytesIn: rec.bytesIn, bytesOut: rec.bytesOut };
      c.tail = [];
      return;
    case "close":
      c.end = rec;
      if (!c.remote) c.remote = rec.remote;
      if (rec.check) c.check = true;
      if (rec.faults) c.faults = rec.faults;
      state.conns.delete(key);
      c.key = key + "~" + (++state.synthetic);
      state.conns.set(c.key, c);
      if (state.selected === key) state.selected = c.key;
      keepClosed(c);
      return;
  }
}

/** How a connection ended, in words. */
function ending(c) {
  const e = c.end;
  if (e === undefined) return { code: "open", text: "open" };
  if (e.event === "refuse") return { code: "refused", text: "refused: " + e.maxConns + " open already (--max-conns)" };
  if (e.event === "open-error") {
    return e.step === "tls"
      ? { code: "handshake", text: "TLS handshake failed: " + e.error }
      : { code: "header", text: "PROXY header rejected: " + e.error };
  }
  if (e.event === "lost") return { code: "error", text: "lost: " + e.why };
  if (e.event === "udp-forgotten") return { code: "eof", text: "forgotten: the quietest of the flows listed (UDP has no close)" };
  const words = {
    eof: "client FIN (it half-closed), reply sent",
    reset: "RST from the client (connection reset)",
    error: "error: " + (e.error || "unknown"),
    "idle-timeout": "idle timeout: the server closed it",
    shutdown: "cut off at shutdown (grace period over)",
    handshake: "TLS handshake failed",
    header: "PROXY header failed",
    check: "health check (PROXY LOCAL), answered",
  };
  return { code: e.reason, text: words[e.reason] || e.reason };
}

function connBytes(c) {
  if (c.end && (c.end.event === "close" || c.end.event === "udp-forgotten")) return [c.end.bytesIn, c.end.bytesOut];
  if (c.end) return [0, 0];
  return c.traced ? [c.tracedIn, c.tracedOut] : [undefined, undefined];
}

function connDuration(c) {
  if (c.end && c.end.event === "close") return c.end.durationMs;
  if (c.end) return undefined;
  return Date.now() - c.opened;
}

function ordered() {
  const open = [], done = [];
  for (const c of state.conns.values()) (c.end === undefined ? open : done).push(c);
  open.sort((a, b) => b.opened - a.opened);
  done.reverse();
  return open.concat(done);
}

function renderList() {
  const rows = $("rows");
  const list = ordered();
  const open = list.filter((c) => c.end === undefined).length;
  $("counts").textContent = list.length === 0
    ? "No connection yet."
    : plural(open, "open connection") + ", the last " + plural(list.length - open, "closed one") +
      " (at most " + state.limits.closed + " kept). Choose one to see its diagram.";
  const frag = document.createDocumentFragment();
  for (const c of list) {
    const tr = document.createElement("tr");
    const end = ending(c);
    const [bin, bout] = connBytes(c);
    tr.dataset.key = c.key;
    tr.dataset.reason = end.code;
    if (faultWords(c)) tr.dataset.fault = faultWords(c);
    tr.setAttribute("aria-selected", String(state.selected === c.key));
    const cells = [
      null,
      c.remote || "?",
      bytes(bin),
      bytes(bout),
      duration(connDuration(c)),
      end.text + (c.check && end.code !== "check" ? " (health check)" : "") +
        (faultWords(c) ? " (fault: " + faultWords(c) + ")" : ""),
    ];
    cells.forEach((text, i) => {
      const td = document.createElement("td");
      if (i === 0) {
        const b = document.createElement("button");
        b.type = "button";
        b.textContent = label(c);
        b.setAttribute("aria-label", "Show the diagram of connection " + label(c) + " from " + (c.remote || "?"));
        td.append(b);
      } else td.textContent = text;
      if (i >= 2 && i <= 4) td.className = "num";
      if (i === 5) td.className = "why reason-" + (faultWords(c) && end.code === "eof" ? "fault" : end.code);
      tr.append(td);
    });
    tr.addEventListener("click", () => { state.selected = c.key; render(); });
    frag.append(tr);
  }
  rows.replaceChildren(frag);
}

/** What one trace record draws: arrows, notes, in order. */
function steps(c) {
  const out = [];
  const tls = c.head.concat(c.tail).some((r) => r.call === "handshake");
  let reset = false, finSent = false;
  const add = (rec, kind, dir, text, call, cls) => out.push({ rec, kind, dir, text, call, cls });
  const traces = c.head.slice();
  if (c.skipped !== undefined) traces.push({ event: "skipped", ...c.skipped });
  traces.push(...c.tail);
  if (c.first && (c.first.event === "refuse" || c.first.event === "open-error")) {
    add(c.first, "arrow", "c2s", "SYN", "");
    add(c.first, "arrow", "s2c", "SYN-ACK", "");
    add(c.first, "arrow", "c2s", "ACK", "accept() (inferred)");
    if (c.first.event === "refuse") add(c.first, "arrow", "s2c", "FIN", "close(): refused, " + c.first.maxConns + " open (--max-conns)");
    else add(c.first, "note", "server", (c.first.step === "tls" ? "TLS handshake failed: " : "PROXY header rejected: ") + c.first.error, "");
    return out;
  }
  if (c.more) traces.push({ event: "skipped", count: c.more, udp: true });
  if (traces.length === 0) {
    out.push({ kind: "note", dir: "both", text: "Not traced: it opened while no page was watching (and without --trace),", call: "" });
    out.push({ kind: "note", dir: "both", text: "so only its totals are known.", call: "" });
  }
  for (const r of traces) {
    const p = state.previews && r.preview ? " " + r.preview : "";
    switch (r.event === "skipped" ? "skipped" : r.call) {
      case "accept":
        add(r, "arrow", "c2s", "SYN", "");
        add(r, "arrow", "s2c", "SYN-ACK", "");
        add(r, "arrow", "c2s", "ACK", "accept() (handshake inferred)");
        break;
      case "proxy": {
        const m = /PROXY header \(v(\d)/.exec(r.text);
        add(r, "arrow", "c2s", "PROXY " + (m ? "v" + m[1] + " " : "") + "header", "proxy: " + (r.text.split(": ").pop() || ""));
        break;
      }
      case "handshake":
        add(r, "arrow", "c2s", "TLS ClientHello", "");
        add(r, "arrow", "s2c", "TLS ServerHello … Finished", "");
        add(r, "arrow", "c2s", "TLS Finished", "handshake done");
        break;
      case "read": add(r, "arrow", "c2s", plural(r.bytes, "byte"), "read() = " + r.bytes + p); break;
      case "recvfrom": add(r, "arrow", "c2s", "datagram, " + plural(r.bytes, "byte"), "recvfrom() = " + r.bytes + (r.kept !== undefined && r.kept < r.bytes ? " (--once keeps " + r.kept + ")" : "")); break;
      case "sendto": add(r, "arrow", "s2c", "datagram, " + plural(r.bytes, "byte"), "sendto(" + r.bytes + ")"); break;
      case "write": add(r, "arrow", "s2c", plural(r.bytes, "byte"), "write(" + r.bytes + ")" + p); break;
      case "write-wait": add(r, "note", "server", "write() waits: the client's receive window is full", ""); break;
      case "eof":
        add(r, "arrow", "c2s", !tls ? "FIN" : /without close_notify/.test(r.text) ? "FIN (no close_notify)" : "close_notify + FIN", "read() = 0: EOF");
        break;
      case "reset": reset = true; add(r, "arrow", "c2s", "RST", "read(): ECONNRESET"); break;
      case "error": add(r, "note", "server", r.text, ""); break;
      case "shutdown": finSent = true; add(r, "arrow", "s2c", "FIN", "shutdown(SHUT_WR)"); break;
      case "close":
        if (reset || /nothing is sent/.test(r.text)) add(r, "note", "server", "close(): frees the socket (it was reset)", "");
        else if (finSent) add(r, "note", "server", "close()", "");
        else add(r, "arrow", "s2c", (tls ? "close_notify + FIN" : "FIN") + (/or RST/.test(r.text) && !/FIN sent, the connection is closed both ways/.test(r.text) ? " (RST if unread data)" : ""), "close()");
        break;
      case "fault": {
        const kind = (/\(fault: ([a-z-]+)\)$/.exec(r.text) || [])[1] || "";
        const said = "fault: " + (faultSaid(c, kind) || kind);
        if (kind === "reset") { reset = true; add(r, "arrow", "s2c", "RST (" + said + ")", "", "fault"); }
        else if (kind === "close") { finSent = true; add(r, "arrow", "s2c", "FIN (" + said + ")", "shutdown(SHUT_WR)", "fault"); }
        else add(r, "note", "server", r.text.replace(/ \(fault: [a-z-]+\)$/, "") + " (" + said + ")", "", "fault");
        break;
      }
      case "skipped":
        out.push({ rec: r, kind: "gap", dir: "both", text: r.udp ? "… " + plural(r.count, "later socket call") + " not drawn …" : "… " + plural(r.count, "socket call") + " left out (" + bytes(r.bytesIn) + " in, " + bytes(r.bytesOut) + " out) …", call: "" });
        break;
      default: add(r, "note", "server", r.call + ": " + r.text, "");
    }
  }
  if (c.end && c.end.event === "close") {
    const e = ending(c);
    out.push({ rec: c.end, kind: "end", dir: "both", text: "Closed after " + duration(c.end.durationMs) + ": " + e.text, call: "" });
    out.push({ kind: "end", dir: "both", text: bytes(c.end.bytesIn) + " in, " + bytes(c.end.bytesOut) + " out", call: "" });
  } else if (c.end && c.end.event === "lost") {
    out.push({ kind: "end", dir: "both", text: "Lost: " + c.end.why, call: "" });
  }
  return out;
}

/** At most max characters for the SVG; the list under it has them all. */
function fit(text, max) { return text.length <= max ? text : text.slice(0, max - 1) + "…"; }

function renderDiagram() {
  const svg = $("d-svg");
  const text = $("d-text");
  const c = state.selected === undefined ? undefined : state.conns.get(state.selected);
  if (c === undefined) {
    $("d-title").textContent = "Sequence diagram";
    $("d-sub").textContent = "Choose a connection from the list to see its socket calls.";
    svg.replaceChildren(); svg.setAttribute("viewBox", "0 0 560 20");
    text.replaceChildren();
    return;
  }
  const e = ending(c);
  $("d-title").textContent = (c.udp ? "Datagrams " : "Connection " + label(c) + " ") + "from " + (c.remote || "?");
  $("d-sub").textContent = (c.end ? e.text : "open, " + duration(connDuration(c)) + " so far") +
    ". Arrows in time order, each labelled with the server's socket call.";
  const list = steps(c);
  const W = 560, cx = 150, sx = 470, top = 44, row = 40;
  const H = top + list.length * row + 16;
  svg.setAttribute("viewBox", "0 0 " + W + " " + H);
  const g = document.createDocumentFragment();
  const defs = el("defs", {});
  for (const [id, cls] of [["ah-in", "c2s"], ["ah-out", "s2c"]]) {
    const m = el("marker", { id, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 8, markerHeight: 8, orient: "auto-start-reverse" });
    m.append(el("path", { d: "M0,0 L10,5 L0,10 z", class: cls, style: "fill: var(--" + (cls === "c2s" ? "in" : "out") + ")" }));
    defs.append(m);
  }
  g.append(defs);
  g.append(el("text", { x: cx, y: 18, class: "head" }, "client " + (c.remote || "")));
  g.append(el("text", { x: sx, y: 18, class: "head" }, "server"));
  g.append(el("line", { x1: cx, y1: 26, x2: cx, y2: H - 6, class: "life" }));
  g.append(el("line", { x1: sx, y1: 26, x2: sx, y2: H - 6, class: "life" }));
  const t0 = c.opened || (list[0] && list[0].rec ? Date.parse(list[0].rec.time) : 0);
  const items = document.createDocumentFragment();
  list.forEach((s, i) => {
    const y = top + i * row + 14;
    const when = s.rec && s.rec.time ? "+" + Math.max(0, Date.parse(s.rec.time) - t0) + " ms" : "";
    if (when) g.append(el("text", { x: 70, y: y + 4, class: "when" }, when));
    let words;
    if (s.kind === "arrow") {
      const c2s = s.dir === "c2s";
      const line = el("line", {
        x1: c2s ? cx : sx, y1: y, x2: c2s ? sx - 2 : cx + 2, y2: y,
        class: "arrow " + s.dir + (s.cls ? " " + s.cls : ""), "marker-end": "url(#" + (c2s ? "ah-in" : "ah-out") + ")",
      });
      words = (c2s ? "client → server: " : "server → client: ") + s.text + (s.call ? " (" + s.call + ")" : "");
      line.append(el("title", {}, (c2s ? "client → server: " : "server → client: ") + s.text + (s.call ? ", " + s.call : "")));
      g.append(line);
      g.append(el("text", { x: (cx + sx) / 2, y: y - 5, class: "lbl" + (s.cls ? " " + s.cls : s.text === "RST" ? " bad" : "") }, s.text));
      if (s.call) g.append(el("text", { x: (cx + sx) / 2, y: y + 14, class: "call" }, fit(s.call, 50)));
    } else if (s.kind === "note") {
      words = (s.dir === "server" ? "server: " : "") + s.text;
      const x = s.dir === "server" ? sx - 8 : (cx + sx) / 2;
      g.append(el("text", { x, y: y + 4, class: "note" + (s.cls ? " " + s.cls : ""), "text-anchor": s.dir === "server" ? "end" : "middle" }, fit(s.text, s.dir === "server" ? 60 : 72)));
    } else {
      words = s.text;
      g.append(el("text", { x: (cx + sx) / 2, y: y + 4, class: s.kind === "gap" ? "gap" : "note", "text-anchor": "middle", "font-weight": s.kind === "end" ? 600 : 400 }, fit(s.text, 64)));
    }
    const li = document.createElement("li");
    li.textContent = (when ? when + ": " : "") + words;
    items.append(li);
  });
  svg.replaceChildren(g);
  text.replaceChildren(items);
}

function drawGraph(id, series, keys, unit) {
  const svg = $(id);
  const W = 340, H = 96, left = 44, right = 6, top = 8, bottom = 18;
  const n = state.seconds;
  let max = 0;
  for (const s of series) for (const k of keys) max = Math.max(max, s[k]);
  const scale = max === 0 ? 1 : niceCeil(max);
  const end = series.length ? series[series.length - 1].t : Math.floor(Date.now() / 1000) - 1;
  const g = document.createDocumentFragment();
  g.append(el("line", { x1: left, y1: H - bottom, x2: W - right, y2: H - bottom, class: "axis" }));
  g.append(el("line", { x1: left, y1: top, x2: left, y2: H - bottom, class: "axis" }));
  g.append(el("text", { x: left - 4, y: top + 4, class: "tick", "text-anchor": "end" }, unit(scale)));
  g.append(el("text", { x: left - 4, y: H - bottom + 3, class: "tick", "text-anchor": "end" }, "0"));
  g.append(el("text", { x: left, y: H - 4, class: "tick" }, "-5 min"));
  g.append(el("text", { x: W - right, y: H - 4, class: "tick", "text-anchor": "end" }, "now"));
  const x = (t) => left + (W - left - right) * (1 - (end - t) / (n - 1));
  const y = (v) => H - bottom - (H - top - bottom) * (v / scale);
  keys.forEach((k, i) => {
    const pts = [];
    for (const s of series) if (end - s.t < n) pts.push(x(s.t).toFixed(1) + "," + y(s[k]).toFixed(1));
    const cls = keys.length === 1 ? (id === "g-open" ? "s-conn" : "s-conn") : (i === 0 ? "s-in" : "s-out");
    if (pts.length) g.append(el("polyline", { points: pts.join(" "), class: "series " + cls, "data-key": k }));
  });
  svg.replaceChildren(g);
  svg.dataset.max = String(max);
}

function niceCeil(v) {
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function renderGraphs() {
  const s = state.series;
  const last = s.length ? s[s.length - 1] : { connections: 0, bytesIn: 0, bytesOut: 0, open: openCount() };
  const sum = (k) => s.reduce((a, x) => a + x[k], 0);
  const peak = (k) => s.reduce((a, x) => Math.max(a, x[k]), 0);
  drawGraph("g-conn", s, ["connections"], (v) => v + "/s");
  drawGraph("g-bytes", s, ["bytesIn", "bytesOut"], (v) => bytes(v) + "/s");
  drawGraph("g-open", s, ["open"], (v) => String(v));
  $("g-conn-text").textContent = "Last 5 min: " + plural(sum("connections"), "connection") + ", peak " + peak("connections") + "/s, last second " + last.connections + "/s.";
  $("g-bytes-text").textContent = "Last 5 min: " + bytes(sum("bytesIn")) + " in, " + bytes(sum("bytesOut")) + " out; last second " + bytes(last.bytesIn) + "/s in, " + bytes(last.bytesOut) + "/s out.";
  const open = openCount();
  $("g-open-text").textContent = "Open now: " + (open >= state.limits.open ? open + " or more" : open) + "; most at once in 5 min: " + peak("open") + ".";
}

function renderHeader() {
  $("server").textContent = state.shutdown || state.server;
  $("mode").textContent = state.previews
    ? "--trace is on: byte previews shown."
    : "Without --trace: sizes and timing only, no payload.";
  $("faults").textContent = state.faults.length === 0
    ? ""
    : "Faults: " + state.faults.join(", ") + " (--fault-seed " + state.faultSeed + ")";
}

let pending = false;
function render() {
  if (pending) return;
  pending = true;
  setTimeout(() => {
    pending = false;
    renderHeader(); renderList(); renderDiagram(); renderGraphs();
  }, 40);
}

function setStatus(kind, text) {
  const s = $("status");
  s.dataset.state = kind;
  s.textContent = text;
  document.body.dataset.live = kind === "live" ? "true" : "false";
}

function connectStream() {
  const source = new EventSource("events");
  source.addEventListener("hello", (e) => {
    const hello = JSON.parse(e.data);
    const selected = state.selected;
    state.conns = new Map(); state.closed = []; state.server = ""; state.shutdown = "";
    state.limits = hello.limits; state.seconds = hello.seconds; state.previews = hello.previews;
    state.series = hello.graph;
    state.selected = selected;
    setStatus("history", "Loading the recent history…");
  });
  source.addEventListener("live", () => { setStatus("live", "Live"); render(); });
  source.addEventListener("tick", (e) => {
    const second = JSON.parse(e.data);
    state.series.push(second);
    while (state.series.length && second.t - state.series[0].t >= state.seconds) state.series.shift();
    render();
  });
  source.onmessage = (e) => { handle(JSON.parse(e.data)); render(); };
  source.onerror = () => {
    setStatus("lost", source.readyState === EventSource.CLOSED ? "Disconnected" : "Reconnecting… (the server stopped, or is busy)");
  };
}

render();
connectStream();
</script>
</body>
</html>
`;
