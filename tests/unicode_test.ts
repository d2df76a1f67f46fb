// Copyright the upcase authors. MIT license.
import { assertEquals } from "@std/assert";
import { serve, toUpperUnicode, UnicodeUpperCaser } from "../mod.ts";
import {
  assertSameBytes,
  concat,
  expectedUpperUnicode,
  randomBytes,
  readToEnd,
  text,
  utf8,
} from "./_util.ts";

/** Text in many scripts, with characters of 1 to 4 bytes and expansions. */
const SAMPLE =
  "\ufeffhéllo, straße! ﬁ ŉ ΐ ǆ Ωμέγα привет ǅ 𐐨𐐩 (deseret) 日本語 ı ſ 🙂 \ufeffend";

/** Runs `bytes` through a caser in the given pieces and joins the output. */
function streamed(pieces: Uint8Array[]): Uint8Array {
  const upper = new UnicodeUpperCaser();
  return concat([...pieces.map((piece) => upper.push(piece)), upper.flush()]);
}

Deno.test("toUpperUnicode() upper-cases as Unicode, growing where the mapping does", () => {
  assertEquals(text(toUpperUnicode("straße")), "STRASSE");
  assertEquals(text(toUpperUnicode("héllo")), "HÉLLO");
  assertEquals(text(toUpperUnicode(SAMPLE)), SAMPLE.toUpperCase());
  assertEquals(toUpperUnicode(new Uint8Array(0)), new Uint8Array(0));
});

Deno.test("UnicodeUpperCaser gives the same bytes however the stream is split in two", () => {
  const bytes = utf8(SAMPLE);
  const expected = utf8(SAMPLE.toUpperCase());
  for (let cut = 0; cut <= bytes.length; cut++) {
    assertSameBytes(
      streamed([bytes.subarray(0, cut), bytes.subarray(cut)]),
      expected,
      `split at byte ${cut}`,
    );
  }
});

Deno.test("UnicodeUpperCaser gives the same bytes when fed one byte at a time", () => {
  const bytes = utf8(SAMPLE);
  const pieces = Array.from(bytes, (_, i) => bytes.subarray(i, i + 1));
  assertSameBytes(streamed(pieces), utf8(SAMPLE.toUpperCase()));
});

Deno.test("UnicodeUpperCaser passes bytes that are not UTF-8 through unchanged", () => {
  const cases: [number[], number[]][] = [
    [[0xff], [0xff]], // never valid
    [[0x61, 0x80, 0x62], [0x41, 0x80, 0x42]], // a lone continuation byte
    [[0xc0, 0xaf, 0x61], [0xc0, 0xaf, 0x41]], // an overlong "/"
    [[0xed, 0xa0, 0x80, 0x7a], [0xed, 0xa0, 0x80, 0x5a]], // a surrogate
    [[0xf4, 0x90, 0x80, 0x80], [0xf4, 0x90, 0x80, 0x80]], // above U+10FFFF
    [[0x61, 0xc3], [0x41, 0xc3]], // cut off by the end of the stream
    [[0xe2, 0x82, 0x61], [0xe2, 0x82, 0x41]], // cut off by an ASCII byte
    [[0xc3, 0xa9, 0xff, 0xc3, 0xa9], [0xc3, 0x89, 0xff, 0xc3, 0x89]], // é ff é
  ];
  for (const [input, expected] of cases) {
    const bytes = new Uint8Array(input);
    assertEquals(toUpperUnicode(bytes), new Uint8Array(expected));
    for (let cut = 0; cut <= bytes.length; cut++) {
      assertEquals(
        streamed([bytes.subarray(0, cut), bytes.subarray(cut)]),
        new Uint8Array(expected),
        `${input} split at ${cut}`,
      );
    }
  }
});

Deno.test("UnicodeUpperCaser matches a character-by-character reference on text mixed with random bytes, split anywhere", () => {
  for (let round = 0; round < 20; round++) {
    const parts = [
      utf8(SAMPLE),
      randomBytes(200),
      utf8(SAMPLE.slice(round)),
      randomBytes(50),
    ];
    const bytes = concat(parts);
    const expected = expectedUpperUnicode(bytes);
    assertSameBytes(toUpperUnicode(bytes), expected, `round ${round}`);
    const cuts = [0, ...randomBytes(6)].map((b) =>
      Math.floor(b / 256 * bytes.length)
    ).sort((a, b) => a - b);
    const pieces = cuts.map((cut, k) =>
      bytes.subarray(cut, cuts[k + 1] ?? bytes.length)
    );
    assertSameBytes(streamed(pieces), expected, `round ${round}, cuts ${cuts}`);
  }
});

Deno.test("serve({ unicode: true }) upper-cases text split across many writes", async () => {
  await using server = serve({
    hostname: "127.0.0.1",
    port: 0,
    unicode: true,
  });
  using conn = await Deno.connect({
    hostname: "127.0.0.1",
    port: server.addr.port,
  });
  const bytes = utf8(SAMPLE.repeat(50));
  const replying = readToEnd(conn);
  for (let i = 0; i < bytes.length; i += 5) {
    await conn.write(bytes.subarray(i, i + 5));
  }
  await conn.closeWrite();
  assertEquals(text(await replying), SAMPLE.repeat(50).toUpperCase());
});
