// Copyright the upcase authors. MIT license.
// Keeps TUTORIAL.md and TUTORIAL.zh-CN.md honest, the way `deno test --doc`
// keeps code examples honest: every command in them is run, and the output
// they show is compared with what the command printed.
//
// The markup (see the "How to read the commands" part of the tutorial):
//
// - A ```console block holds commands after `$ ` and, below each, what it
//   prints. Without a directive its commands run one after another in one
//   shell on a fresh terminal and must end (the output is everything they
//   print). Blocks of only `ss`/`netstat` commands are run again until they
//   match (for at most OBSERVE_MS): connection states change on their own,
//   like FIN-WAIT-1 turning FIN-WAIT-2 once the peer's delayed ACK arrives.
// - `<!-- test: term N -->` before a block: the block happens in terminal N,
//   which keeps running. A `$ ` line starts a program there; the lines below
//   it are what the terminal has shown so far. A block without `$ ` (```console
//   or ```text) is what terminal N showed since the last block about it.
//   `, input "hello\n"` (a JSON string), `, input ^C` or `, input ^D` types
//   that into terminal N; what the block shows above the keys' echo (a line
//   starting `hello`, or `^C`) must be on the screen before they are typed,
//   as it would be for a reader. A `...` line stands for any lines.
// - `<!-- test: excerpt of PATH -->`: the block is a verbatim part of PATH.
// - `<!-- test: parses only (...) -->`: the commands are checked elsewhere;
//   here each is run with `--help` added, which parses every flag first: it
//   must exit 0 and the help must list each flag the command uses.
//
// Every terminal is a real pty (util-linux `script`), so programs see what
// they see on the reader's screen: typed input is echoed, Ctrl-C is SIGINT,
// the C server's printf is line-buffered. Each `## ` section runs on its own
// free port: `6666` is rewritten to it in the commands and in the copies of
// tutorial/ (the seed's server.c hard-codes it), `server.ts`/`client.ts` get
// `--port` added, `deno` is Deno.execPath(), and the programs run from a copy
// of the project in a temporary folder (gcc's output lands there). Before
// comparing, both sides have colours stripped and spaces collapsed, the port
// turned back into 6666, ephemeral ports, PIDs and uptimes masked (the same
// port shown twice in a section must be the same port each time), and
// ss/netstat queue sizes of four digits or more stand for "a full buffer"
// (and a CLOSE-WAIT's Recv-Q of 1, its FIN, for 0: whether a read() took the
// FIN depends on whether it came with the last data).
// ss/netstat lines may come in any order. In `tcpdump -r` lines (a recording,
// compared in order) the timestamp, `seq`, `ack`, the `options [...]` and a
// `win` other than 0 are masked (`win 0`, a zero window, is kept), a `length`
// of four digits or more is "a full segment", `127.0.0.1.PORT` ports are
// masked like `127.0.0.1:PORT` ones, and "N packets received by filter" and
// "N packets dropped by kernel" (every packet on lo, whoever sent it: they
// vary with the machine's other traffic) are masked too.
//
// A section whose commands use a program it lacks (gcc, ss, netstat, python3,
// tcpdump, ip, nft) is skipped with a "SKIPPED" line; tcpdump, ip and nft
// also need root, so a section using them is skipped when not run as root.
// With CI=true both fail. `ip netns exec NAME PROGRAM` runs PROGRAM in a
// network namespace: PROGRAM counts as used too (`deno` is rewritten there
// as well), and a namespace the section adds is deleted before and after it.
//
// The Chinese file must have exactly the English file's blocks (commands,
// inputs, outputs, directives), so running the English one runs both.
//
// TUTORIAL_FILE=path (relative to the current folder) runs that file's
// sections instead of TUTORIAL.md's, with the checks of the Chinese file left
// out: a way to try new blocks in a scratch copy before they go in.

import { assert, assertEquals } from "@std/assert";
import { isRoot } from "./_util.ts";

const ROOT = new URL("../", import.meta.url);
/** A scratch tutorial to run instead of TUTORIAL.md (see above). */
const SCRATCH = Deno.env.get("TUTORIAL_FILE");
const ENGLISH = SCRATCH ?? "TUTORIAL.md";
const CHINESE = "TUTORIAL.zh-CN.md";
/** The port the tutorial uses; each section runs on a free one instead. */
const TUTORIAL_PORT = "6666";
/** Programs a section may need; without one the section is skipped. */
const TOOLS = [
  "gcc",
  "ss",
  "netstat",
  "python3",
  "tcpdump",
  "ip",
  "nft",
] as const;
/** Tools that capture packets or change the network, which only root may. */
const ROOT_TOOLS = new Set<string>(["tcpdump", "ip", "nft"]);
const CI = Deno.env.get("CI") === "true";

/** How long one block of commands may run. */
const COMMANDS_MS = 15_000;
/** How long a terminal gets to show what a block says it shows. */
const SHOW_MS = 5_000;
/** How long a terminal that should stay quiet is watched. */
const QUIET_MS = 300;
/** How long ss/netstat are given to reach the states a block shows. */
const OBSERVE_MS = 10_000;
/** How long a terminal gets to end at the end of a section. */
const END_MS = 5_000;

const decoder = new TextDecoder();
const encoder = new TextEncoder();

// ---------------------------------------------------------------- parsing

type Directive =
  | { kind: "term"; term: number; input?: string }
  | { kind: "excerpt"; path: string }
  | { kind: "parses"; reason: string };

interface Block {
  /** Where the block starts, as file:line. */
  where: string;
  lang: string;
  directive?: Directive;
  /** The text of the directive, as written. */
  directiveText?: string;
  lines: string[];
}

interface Section {
  title: string;
  blocks: Block[];
}

/** A command and the output the tutorial shows under it. */
interface Step {
  command: string;
  output: string[];
}

function parseDirective(text: string, where: string): Directive {
  const parts = text.split(/,\s*(?=input\b)/).map((p) => p.trim());
  const head = parts[0]!;
  let match = head.match(/^term (\d+)$/);
  if (match) {
    const directive: Directive = { kind: "term", term: Number(match[1]) };
    if (parts.length > 1) {
      const input = parts[1]!.match(/^input (\^C|\^D|".*")$/)?.[1];
      if (input === undefined || parts.length > 2) {
        throw new Error(`${where}: bad input in "${text}"`);
      }
      directive.input = input === "^C"
        ? "\x03"
        : input === "^D"
        ? "\x04"
        : JSON.parse(input);
    }
    return directive;
  }
  match = head.match(/^excerpt of (\S+)$/);
  if (match) return { kind: "excerpt", path: match[1]! };
  match = head.match(/^parses only\b(.*)$/);
  if (match) return { kind: "parses", reason: match[1]!.trim() };
  throw new Error(`${where}: unknown test directive "${text}"`);
}

/** The file's `## ` sections with their fenced blocks. */
function parseTutorial(file: string, text: string): Section[] {
  const lines = text.split("\n");
  const sections: Section[] = [{
    title: "(before the first step)",
    blocks: [],
  }];
  let pending: { text: string; line: number } | undefined;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.startsWith("## ")) {
      sections.push({ title: line.slice(3).trim(), blocks: [] });
      pending = undefined;
      continue;
    }
    const comment = line.match(/^<!--\s*test:\s*(.*?)\s*-->$/);
    if (comment) {
      pending = { text: comment[1]!, line: i + 1 };
      continue;
    }
    const fence = line.match(/^(`{3,}|~{3,})\s*(\S*)/);
    if (fence) {
      const where = `${file}:${i + 1}`;
      const body: string[] = [];
      for (i++; i < lines.length && !lines[i]!.startsWith(fence[1]!); i++) {
        body.push(lines[i]!);
      }
      assert(i < lines.length, `${where}: the block is not closed`);
      const block: Block = { where, lang: fence[2]!, lines: body };
      if (pending) {
        block.directiveText = pending.text;
        block.directive = parseDirective(
          pending.text,
          `${file}:${pending.line}`,
        );
      }
      sections.at(-1)!.blocks.push(block);
      pending = undefined;
      continue;
    }
    if (line.trim() !== "") pending = undefined;
  }
  return sections;
}

/** A console block's commands, each with the output shown under it. */
function stepsOf(block: Block): { before: string[]; steps: Step[] } {
  const before: string[] = [];
  const steps: Step[] = [];
  for (const line of block.lines) {
    if (line.startsWith("$ ")) {
      steps.push({ command: line.slice(2), output: [] });
    } else if (steps.length === 0) before.push(line);
    else steps.at(-1)!.output.push(line);
  }
  return { before, steps };
}

const OBSERVER = /^(?:ip netns exec \S+ )?(ss|netstat)\b/;

/** `ip netns exec NAME PROGRAM ...`: runs PROGRAM in a network namespace. */
const IN_NAMESPACE = /^ip netns exec \S+\s+(\S+)/;

/** The programs a command line starts (the first word of each part). */
function programsOf(command: string): string[] {
  return command.split(/\|\||&&|[|;()]/).flatMap((part) => {
    const first = part.trim().split(/\s+/)[0] ?? "";
    const inner = part.trim().match(IN_NAMESPACE)?.[1];
    return inner === undefined ? [first] : [first, inner];
  }).filter((word) => word !== "");
}

// ---------------------------------------------------------------- output

/** Output as lines, the way a reader compares it with the page. */
function screenLines(raw: string, port: number): string[] {
  return raw
    // deno-lint-ignore no-control-regex
    .replace(/\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07/g, "")
    .replace(/\r+\n/g, "\n")
    .replace(new RegExp(`(?<!\\d)${port}(?!\\d)`, "g"), TUTORIAL_PORT)
    .split("\n")
    .map(collapse);
}

function collapse(line: string): string {
  return line.replace(/\s+/g, " ").trim();
}

const SOCKET_LINE =
  /^(?:(LISTEN|ESTAB|SYN-SENT|SYN-RECV|FIN-WAIT-1|FIN-WAIT-2|TIME-WAIT|CLOSE-WAIT|LAST-ACK|CLOSING|UNCONN)|tcp6?) (\d+) (\d+) /;

/** A `tcpdump -r` line: `15:04:05.123456 IP 127.0.0.1.43510 > ...: Flags`. */
const TCPDUMP_LINE = /^\d{2}:\d{2}:\d{2}\.\d{6} (IP6? .*\bFlags \[.*)$/;

/** A tcpdump line with what differs from run to run masked. */
function maskedSegment(line: string): string {
  const match = line.match(TCPDUMP_LINE);
  if (!match) return line;
  return "TIME " + match[1]!
    .replace(/\bseq \d+(:\d+)?/, (_, end) => end ? "seq N:N" : "seq N")
    .replace(/\back \d+/, "ack N")
    // A zero window is what step 5 shows; any other size varies.
    .replace(/\bwin [1-9]\d*/, "win N")
    .replace(/\boptions \[[^\]]*\]/, "options [...]")
    // Full segments (step 5) vary in size; small payloads must be exact.
    .replace(/\blength \d{4,}/, "length MANY");
}

/** A line with its varying parts masked, and the ports it names. */
function masked(line: string): { text: string; ports: string[] } {
  const ports: string[] = [];
  let text = maskedSegment(line)
    .replace(/\bpid=\d+/g, "pid=PID")
    .replace(/^(tcp6?\b.*?)\b\d+\/(\S+)$/, "$1PID/$2")
    .replace(/\bup (?:\d+(?:d|h|m|s|ms|µs|ns)\b ?)+/g, "up TIME ")
    // Bulk transfers (step 5) vary in size; small counts must be exact.
    .replace(/\b\d{4,} bytes\b/g, "MANY bytes")
    .replace(/(?<!\d)\d{3,} packets\b/g, "MANY packets") // tcpdump: as much
    // Every packet on lo passes the filter, whoever sent it.
    .replace(/^\d+ packets received by filter$/, "N packets received by filter")
    .replace(/^\d+ packets dropped by kernel$/, "N packets dropped by kernel")
    .replace(/\b\d+(?:\.\d+)? [kMGT]B\b/g, "SIZE")
    .replace(
      SOCKET_LINE,
      (all, state, recv, send) =>
        `${state ?? all.split(" ")[0]} ${
          // A FIN counts 1 in Recv-Q until a read() takes it; one that came
          // with the last data was taken by the read() of that data.
          state === "CLOSE-WAIT" && recv === "1" ? "0" : queue(recv)} ${
          queue(send)
        } `,
    );
  // 127.0.0.1:43510, [::1]:43510, "at PORT 43510", and tcpdump's
  // 127.0.0.1.43510.
  text = text.replace(
    /(?<=(?:\d|\]):|\bPORT |\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\.)\d+(?!\d)/g,
    (port) => {
      if (port === TUTORIAL_PORT) return port;
      ports.push(port);
      return "PORT";
    },
  );
  return { text: text.trim(), ports };
}

function queue(n: string): string {
  return n.length >= 4 ? "FULL" : n;
}

/** Ports the tutorial showed in this section, and what each really was. */
type PortMap = Map<string, string>;

function bindPorts(
  map: PortMap,
  expected: string[],
  actual: string[],
): string | undefined {
  for (let i = 0; i < expected.length; i++) {
    const was = map.get(expected[i]!);
    if (was !== undefined && was !== actual[i]) {
      return `port ${
        expected[i]
      } of the tutorial was ${was} earlier in this step, here ${actual[i]}`;
    }
    map.set(expected[i]!, actual[i]!);
  }
  return undefined;
}

/**
 * How `got` starts the way `want` says: the number of lines it matched, or
 * why not (`more` when more lines could still make it match). A `...` line
 * in `want` stands for any lines, up to the first that matches the next one.
 * The ports seen are bound in `ports`, a copy the caller keeps on success.
 */
function matchLines(
  want: string[],
  got: string[],
  ports: PortMap,
): { used: number } | { reason: string; more?: boolean } {
  let g = 0;
  for (let w = 0; w < want.length; w++) {
    if (want[w] === "...") {
      const next = masked(want[w + 1]!).text;
      let found = g;
      while (found < got.length && masked(got[found]!).text !== next) found++;
      if (found === got.length) {
        return { reason: `no line like: ${want[w + 1]}`, more: true };
      }
      g = found;
      continue;
    }
    if (g >= got.length) return { reason: "fewer lines", more: true };
    const e = masked(want[w]!);
    const a = masked(got[g]!);
    if (e.text !== a.text) return { reason: `line ${g + 1} differs` };
    const conflict = bindPorts(ports, e.ports, a.ports);
    if (conflict) return { reason: conflict };
    g++;
  }
  return { used: g };
}

/** Compares whole outputs in order; on success the ports are bound in `map`. */
function compareLines(
  expected: string[],
  actual: string[],
  map: PortMap,
): string | undefined {
  const trial = new Map(map);
  const result = matchLines(expected, actual, trial);
  if ("reason" in result) return result.reason;
  if (result.used < actual.length) return "more lines than the tutorial shows";
  for (const [k, v] of trial) map.set(k, v);
  return undefined;
}

/** Compares as sets of lines (ss and netstat list sockets in hash order). */
function compareUnordered(
  expected: string[],
  actual: string[],
  map: PortMap,
): string | undefined {
  if (expected.length !== actual.length) return "a different number of lines";
  const trial = new Map(map);
  const left = actual.map(masked);
  for (const line of expected) {
    const e = masked(line);
    const candidates = left.filter((a) => a.text === e.text);
    if (candidates.length === 0) return `no line like: ${line}`;
    // Prefer the one whose ports agree with what was seen before.
    const pick = candidates.find((a) =>
      e.ports.every((p, i) =>
        !trial.has(p) || trial.get(p) === a.ports[i]
      )
    ) ?? candidates[0]!;
    const conflict = bindPorts(trial, e.ports, pick.ports);
    if (conflict) return conflict;
    left.splice(left.indexOf(pick), 1);
  }
  for (const [k, v] of trial) map.set(k, v);
  return undefined;
}

function trimEnd(lines: string[]): string[] {
  const out = [...lines];
  while (out.length > 0 && out.at(-1) === "") out.pop();
  return out;
}

function show(lines: string[]): string {
  return lines.length === 0
    ? "    (nothing)"
    : lines.map((l) => `    ${l}`).join("\n");
}

function mismatch(
  where: string,
  what: string,
  reason: string,
  expected: string[],
  actual: string[],
): Error {
  return new Error(
    `${where}: ${what} does not match the tutorial (${reason})\n  the tutorial shows:\n${
      show(expected)
    }\n  it printed:\n${show(actual)}`,
  );
}

// ---------------------------------------------------------------- terminals

function shellQuote(arg: string): string {
  return `'${arg.replaceAll("'", `'\\''`)}'`;
}

/** Turns a tutorial command into the one this run can use. */
function rewrite(command: string, port: number): string {
  let line = command.replace(/(?<!\d)6666(?!\d)/g, String(port));
  line = line.replace(
    /(^|[|;&(]\s*|\bip netns exec \S+\s+)deno(?=\s)/g,
    (_, before) => `${before}${shellQuote(Deno.execPath())}`,
  );
  if (!/--port\b/.test(line)) {
    line = line.replace(
      /(?<![\w./-])(server|client)\.ts(?![\w.])/g,
      `$& --port ${port}`,
    );
  }
  return line;
}

/** A shell script run on a pty: what the reader types into a terminal. */
class Terminal {
  readonly name: string;
  #child: Deno.ChildProcess;
  #stdin: WritableStreamDefaultWriter<Uint8Array>;
  #raw = "";
  #pump: Promise<void>;
  #status: Promise<Deno.CommandStatus>;
  #exited = false;
  #consumed = 0;
  #port: number;

  constructor(name: string, script: string, cwd: string, port: number) {
    this.name = name;
    this.#port = port;
    this.#child = new Deno.Command("script", {
      args: ["-qfec", `bash ${shellQuote(script)}`, "/dev/null"],
      cwd,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#stdin = this.#child.stdin.getWriter();
    const stdout = this.#child.stdout;
    this.#pump = (async () => {
      const streaming = new TextDecoder();
      for await (const chunk of stdout) {
        this.#raw += streaming.decode(chunk, { stream: true });
      }
      this.#raw += streaming.decode();
    })();
    // script says nothing on its own stderr unless it fails.
    const stderr = new Response(this.#child.stderr).text();
    this.#status = this.#child.status.then(async (status) => {
      await this.#pump;
      this.#raw += await stderr;
      this.#exited = true;
      return status;
    });
  }

  get exited(): boolean {
    return this.#exited;
  }

  get raw(): string {
    return this.#raw;
  }

  /** Lines not yet compared; a last line without its newline only at exit. */
  fresh(): string[] {
    const lines = screenLines(this.#raw, this.#port).slice(this.#consumed);
    return this.#exited ? trimEnd(lines) : lines.slice(0, -1);
  }

  consume(n: number): void {
    this.#consumed += n;
  }

  async type(input: string): Promise<void> {
    await this.#stdin.write(encoder.encode(input));
  }

  async waitForExit(ms: number): Promise<boolean> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), ms);
    });
    try {
      return await Promise.race([this.#status.then(() => true), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Ends the terminal for good: Ctrl-C, then hang up. */
  async close(): Promise<void> {
    if (!this.#exited) {
      await this.type("\x03").catch(() => {});
      if (!await this.waitForExit(1000)) {
        try {
          this.#child.kill("SIGKILL"); // the pty hangs up: SIGHUP for the rest
        } catch (err: unknown) {
          if (!(err instanceof TypeError)) throw err; // it had just exited
        }
      }
    }
    await this.#stdin.close().catch(() => {});
    await this.#status;
  }
}

/** One `## ` section, run from a copy of the project on its own port. */
class Run {
  readonly port: number;
  readonly dir: string;
  readonly ports: PortMap = new Map();
  #terms = new Map<number, Terminal>();
  #scripts = 0;
  #scriptDir: string;

  constructor(dir: string, scriptDir: string, port: number) {
    this.dir = dir;
    this.#scriptDir = scriptDir;
    this.port = port;
  }

  script(commands: string[], separate: boolean): string {
    const path = `${this.#scriptDir}/${++this.#scripts}.sh`;
    // A wide screen, so ss does not wrap; \x1e ends each command's output.
    const lines = ["stty cols 200 rows 50 2>/dev/null"];
    for (const command of commands) {
      lines.push(rewrite(command, this.port));
      if (separate) lines.push(`__status=$?; printf '\\036'; (exit $__status)`);
    }
    Deno.writeTextFileSync(path, lines.join("\n") + "\n");
    return path;
  }

  /** Runs commands to their end on a fresh terminal: each one's output. */
  async runToEnd(commands: string[], where: string): Promise<string[][]> {
    const term = new Terminal(
      where,
      this.script(commands, true),
      this.dir,
      this.port,
    );
    try {
      if (!await term.waitForExit(COMMANDS_MS)) {
        throw new Error(
          `${where}: the commands did not end within ${COMMANDS_MS} ms; shown so far:\n${
            show(screenLines(term.raw, this.port))
          }`,
        );
      }
    } finally {
      await term.close();
    }
    const parts = term.raw.split("\x1e");
    assertEquals(parts.length, commands.length + 1, `${where}: ${term.raw}`);
    return parts.slice(0, -1).map((part) =>
      trimEnd(screenLines(part, this.port)).filter((line, i) =>
        i > 0 || line !== "" // the newline a previous command left
      )
    );
  }

  async start(term: number, command: string, where: string): Promise<void> {
    const running = this.#terms.get(term);
    if (running) {
      // The previous program there must end first, as it would for a reader.
      if (!await running.waitForExit(SHOW_MS)) {
        throw new Error(`${where}: terminal ${term} is still busy`);
      }
      this.#drained(running, where);
      await running.close();
    }
    this.#terms.set(
      term,
      new Terminal(
        `terminal ${term}`,
        this.script([command], false),
        this.dir,
        this.port,
      ),
    );
  }

  terminal(term: number, where: string): Terminal {
    const found = this.#terms.get(term);
    if (!found) {
      throw new Error(`${where}: nothing was started in terminal ${term}`);
    }
    return found;
  }

  /** Waits until `term` has shown `expected` (and nothing else). */
  async expectShown(
    term: Terminal,
    expected: string[],
    where: string,
  ): Promise<void> {
    const want = trimEnd(expected.map(collapse));
    if (want.length === 0) {
      await delay(QUIET_MS);
      const fresh = term.fresh().filter((l) => l !== "");
      if (fresh.length > 0) {
        throw mismatch(where, term.name, "it showed more", [], fresh);
      }
      return;
    }
    assert(want.at(-1) !== "...", `${where}: "..." stands between lines`);
    const deadline = Date.now() + SHOW_MS;
    while (true) {
      const fresh = term.fresh();
      const trial = new Map(this.ports);
      const result = matchLines(want, fresh, trial);
      if ("used" in result) {
        for (const [k, v] of trial) this.ports.set(k, v);
        term.consume(result.used);
        return;
      }
      if (!result.more) {
        throw mismatch(where, term.name, result.reason, want, fresh);
      }
      if (term.exited || Date.now() > deadline) {
        throw mismatch(
          where,
          term.name,
          term.exited ? "it ended" : `waited ${SHOW_MS} ms`,
          want,
          fresh,
        );
      }
      await delay(25);
    }
  }

  #drained(term: Terminal, where: string): void {
    const left = term.fresh().filter((l) => l !== "");
    if (left.length > 0) {
      throw mismatch(
        where,
        term.name,
        "it showed more than the tutorial says",
        [],
        left,
      );
    }
  }

  /** At the end of a section every terminal has ended, all of it shown. */
  async finish(where: string): Promise<void> {
    for (const [n, term] of this.#terms) {
      if (!await term.waitForExit(END_MS)) {
        throw new Error(
          `${where}: terminal ${n} is still running at the end of the step (the tutorial should stop it)`,
        );
      }
      this.#drained(term, where);
    }
  }

  async close(): Promise<void> {
    for (const term of this.#terms.values()) await term.close();
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// ---------------------------------------------------------------- running

async function hasProgram(name: string): Promise<boolean> {
  const { code } = await new Deno.Command("sh", {
    args: ["-c", `command -v ${name}`],
    stdout: "null",
    stderr: "null",
  }).output();
  return code === 0;
}

/** A port free on 127.0.0.1 that no socket line on the machine mentions. */
async function freePort(): Promise<number> {
  for (let attempt = 0;; attempt++) {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const { port } = listener.addr;
    listener.close();
    // `grep 6666` must find only the tutorial's sockets, not an inode or a
    // PID that happens to contain the digits.
    const listing = await new Deno.Command("sh", {
      args: ["-c", "netstat -apn 2>/dev/null; ss -tanp 2>/dev/null"],
      stdout: "piped",
      stderr: "null",
    }).output();
    if (
      !decoder.decode(listing.stdout).includes(String(port)) || attempt > 20
    ) {
      return port;
    }
  }
}

/** A copy of the program and of tutorial/ (with the section's port). */
async function copyProject(dir: string, port: number): Promise<void> {
  for await (const entry of Deno.readDir(ROOT)) {
    if (
      entry.isFile &&
      (entry.name.endsWith(".ts") || entry.name.startsWith("deno."))
    ) {
      await Deno.copyFile(new URL(entry.name, ROOT), `${dir}/${entry.name}`);
    }
  }
  await copyTree(new URL("src/", ROOT), `${dir}/src`, (text) => text);
  await copyTree(
    new URL("tutorial/", ROOT),
    `${dir}/tutorial`,
    (text) => text.replace(/(?<!\d)6666(?!\d)/g, String(port)),
  );
}

async function copyTree(
  from: URL,
  to: string,
  edit: (text: string) => string,
): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for await (const entry of Deno.readDir(from)) {
    if (entry.isDirectory) {
      await copyTree(
        new URL(`${entry.name}/`, from),
        `${to}/${entry.name}`,
        edit,
      );
    } else if (entry.isFile) {
      const bytes = await Deno.readFile(new URL(entry.name, from));
      const text = decoder.decode(bytes);
      await Deno.writeFile(
        `${to}/${entry.name}`,
        text.includes("\ufffd") ? bytes : encoder.encode(edit(text)),
      );
    }
  }
}

/** Where the terminal echoes `input` among `lines` (Ctrl-D echoes nothing). */
function echoAt(lines: string[], input: string): number {
  if (input === "\x04") return 0;
  const echo = input === "\x03" ? "^C" : input.split("\n")[0]!;
  const at = lines.findIndex((line) => line.startsWith(echo));
  return at === -1 ? 0 : at;
}

async function runBlock(run: Run, block: Block): Promise<void> {
  const { where, directive } = block;
  if (directive?.kind === "excerpt") {
    const file = await Deno.readTextFile(new URL(directive.path, ROOT));
    assert(
      file.includes(block.lines.join("\n")),
      `${where}: the block is not a verbatim part of ${directive.path}`,
    );
    return;
  }
  if (block.lang !== "console") {
    assert(
      !["sh", "bash", "shell", "zsh"].includes(block.lang),
      `${where}: commands go in \`\`\`console blocks after "$ ", where the test runs them`,
    );
    if (directive?.kind !== "term") return; // an illustration, not output
  }
  const { before, steps } = block.lang === "console"
    ? stepsOf(block)
    : { before: block.lines, steps: [] };

  if (directive?.kind === "parses") {
    for (const { command, output } of steps) {
      assertEquals(output, [], `${where}: a parses-only block shows no output`);
      const flags = [...command.matchAll(/(?<=\s)--[a-z-]+/g)].map((m) => m[0])
        .filter((flag) => !flag.startsWith("--allow-"));
      const [help] = await run.runToEnd(
        [`${command} --help; echo "exit status $?"`],
        where,
      );
      const text = help!.join("\n");
      assert(text.endsWith("exit status 0"), `${where}: ${text}`);
      for (const flag of flags) {
        assert(
          help!.some((line) => line.startsWith(flag)),
          `${where}: the help does not list ${flag}`,
        );
      }
    }
    return;
  }

  if (directive?.kind === "term") {
    const term = directive.term;
    let shown = before;
    if (directive.input !== undefined) {
      assert(steps.length === 0, `${where}: input goes to a running program`);
      // What comes before the echo of the keys was on the screen before the
      // reader pressed them (a server's log lines, say): wait for it first.
      const echo = echoAt(shown, directive.input);
      if (echo > 0) {
        await run.expectShown(
          run.terminal(term, where),
          shown.slice(0, echo),
          where,
        );
        shown = shown.slice(echo);
      }
      await run.terminal(term, where).type(directive.input);
    }
    if (shown.length > 0 || steps.length === 0) {
      await run.expectShown(run.terminal(term, where), shown, where);
    }
    for (const { command, output } of steps) {
      await run.start(term, command, where);
      await run.expectShown(run.terminal(term, where), output, where);
    }
    return;
  }

  assert(
    before.length === 0 && steps.length > 0,
    `${where}: a console block starts with a "$ " command`,
  );
  const commands = steps.map((s) => s.command);
  const observing = commands.every((c) => OBSERVER.test(c));
  assert(
    observing || !commands.some((c) => OBSERVER.test(c)),
    `${where}: keep ss and netstat in blocks of their own (they are run again until the states settle)`,
  );
  const deadline = Date.now() + OBSERVE_MS;
  while (true) {
    const outputs = await run.runToEnd(commands, where);
    let failure: Error | undefined;
    const trial = new Map(run.ports);
    for (let i = 0; i < steps.length && !failure; i++) {
      const want = trimEnd(steps[i]!.output.map(collapse));
      const got = outputs[i]!;
      const reason = observing
        ? compareUnordered(want, got, trial)
        : compareLines(want, got, trial);
      if (reason !== undefined) {
        failure = mismatch(where, `$ ${steps[i]!.command}`, reason, want, got);
      }
    }
    if (!failure) {
      for (const [k, v] of trial) run.ports.set(k, v);
      return;
    }
    if (!observing || Date.now() > deadline) throw failure;
    await delay(100);
  }
}

/** Why this machine cannot run the tools a section's commands start. */
async function missingTools(section: Section): Promise<string[]> {
  const used = new Set<string>();
  for (const block of section.blocks) {
    if (block.lang !== "console") continue;
    for (const { command } of stepsOf(block).steps) {
      for (const program of programsOf(command)) used.add(program);
    }
  }
  const missing: string[] = [];
  for (const tool of TOOLS) {
    if (!used.has(tool)) continue;
    if (!await hasProgram(tool)) missing.push(`${tool} not installed`);
    else if (ROOT_TOOLS.has(tool) && !await isRoot()) {
      missing.push(`${tool} needs root`);
    }
  }
  return missing;
}

/** Deletes network namespaces by name, quietly when they do not exist. */
async function deleteNamespaces(names: string[]): Promise<void> {
  for (const name of names) {
    await new Deno.Command("ip", {
      args: ["netns", "del", name],
      stdout: "null",
      stderr: "null",
    }).output();
  }
}

async function runSection(section: Section): Promise<void> {
  const missing = await missingTools(section);
  if (missing.length > 0) {
    const reason = missing.join(", ");
    if (CI) throw new Error(`CI=true and ${reason}`);
    console.log(`tutorial_test.ts: SKIPPED "${section.title}": ${reason}`);
    return;
  }
  const dir = await Deno.makeTempDir({ prefix: "upcase-tutorial-" });
  const scripts = await Deno.makeTempDir({ prefix: "upcase-tutorial-sh-" });
  const port = await freePort();
  const run = new Run(dir, scripts, port);
  // A namespace the section makes: gone before (a run that failed may have
  // left it) and after.
  const namespaces = section.blocks.flatMap((block) =>
    block.lines.flatMap((line) => line.match(/\bip netns add (\S+)/)?.[1] ?? [])
  );
  await deleteNamespaces(namespaces);
  try {
    await copyProject(dir, port);
    for (const block of section.blocks) await runBlock(run, block);
    await run.finish(`${ENGLISH} "${section.title}"`);
  } finally {
    await run.close();
    await deleteNamespaces(namespaces);
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(scripts, { recursive: true });
  }
}

// ---------------------------------------------------------------- tests

const english = parseTutorial(
  ENGLISH,
  Deno.readTextFileSync(SCRATCH ?? new URL(ENGLISH, ROOT)),
);
const chinese = SCRATCH === undefined
  ? parseTutorial(CHINESE, Deno.readTextFileSync(new URL(CHINESE, ROOT)))
  : [];
const hasScript = await hasProgram("script");

/** What a block asks the test to do and check, without where it is. */
function checked(section: Section): unknown[] {
  return section.blocks.filter((b) =>
    b.lang === "console" || b.directive !== undefined
  ).map((b) => ({ lang: b.lang, directive: b.directiveText, lines: b.lines }));
}

Deno.test({
  name:
    "TUTORIAL.zh-CN.md has the same steps, commands, inputs and outputs as TUTORIAL.md",
  ignore: SCRATCH !== undefined,
}, () => {
  assertEquals(chinese.length, english.length, "the number of ## sections");
  for (let i = 0; i < english.length; i++) {
    assertEquals(
      checked(chinese[i]!),
      checked(english[i]!),
      `section ${i}: "${chinese[i]!.title}" against "${english[i]!.title}"`,
    );
  }
});

Deno.test({
  name:
    "TUTORIAL.md and TUTORIAL.zh-CN.md keep their commands in console blocks the test runs",
  ignore: SCRATCH !== undefined,
}, () => {
  const blocks = [...english, ...chinese].flatMap((s) => s.blocks);
  assert(blocks.filter((b) => b.lang === "console").length >= 20);
  for (const block of blocks) {
    assert(
      !["sh", "bash", "shell", "zsh"].includes(block.lang),
      `${block.where}: commands go in \`\`\`console blocks`,
    );
  }
});

for (const section of english) {
  if (section.blocks.length === 0) continue;
  Deno.test({
    name:
      `TUTORIAL.md "${section.title}": every command prints what the tutorial shows`,
    ignore: !hasScript && !CI,
    sanitizeResources: true,
    sanitizeOps: true,
    async fn() {
      if (!hasScript) throw new Error("CI=true and no `script` (util-linux)");
      await runSection(section);
    },
  });
}

if (!hasScript && !CI) {
  console.log(
    "tutorial_test.ts: SKIPPED the tutorial's commands: no `script` (util-linux) to give them a terminal",
  );
}
