// Copyright the upcase authors. MIT license.
import { assertEquals, assertStrictEquals } from "@std/assert";
import { toUpper, toUpperInPlace } from "../src/transform.ts";
import { assertSameBytes, expectedUpper, randomBytes } from "./_util.ts";

Deno.test("toUpper() maps each of the 256 byte values like C toupper in the C locale", () => {
  const all = new Uint8Array(256).map((_, i) => i);
  const upper = toUpper(all);
  for (let b = 0; b < 256; b++) {
    const expected = b >= 0x61 && b <= 0x7a ? b - 0x20 : b;
    assertEquals(upper[b], expected, `byte 0x${b.toString(16)}`);
  }
});

Deno.test("toUpper() returns an empty array for empty input", () => {
  assertEquals(toUpper(new Uint8Array(0)), new Uint8Array(0));
  assertEquals(toUpper(""), new Uint8Array(0));
});

Deno.test("toUpper() leaves its input unchanged and keeps the length", () => {
  const input = new TextEncoder().encode("mixed Case 123 ÿ");
  const before = input.slice();
  const output = toUpper(input);
  assertEquals(input, before);
  assertEquals(output.length, input.length);
  assertEquals(new TextDecoder().decode(output), "MIXED CASE 123 ÿ");
});

Deno.test("toUpperInPlace() matches the reference at every length and alignment up to 300 bytes", () => {
  const backing = randomBytes(320);
  // Make letters common so every word mixes letters and non-letters.
  for (let i = 0; i < backing.length; i += 3) backing[i] = 0x60 + (i % 28);
  for (let offset = 0; offset < 8; offset++) {
    for (let length = 0; length <= 300; length++) {
      const bytes = backing.slice(0, offset + length).subarray(offset);
      const expected = expectedUpper(bytes);
      assertStrictEquals(toUpperInPlace(bytes), bytes);
      assertSameBytes(bytes, expected, `offset ${offset} length ${length}`);
    }
  }
});

Deno.test("toUpperInPlace() changes only the view it is given, not its neighbours", () => {
  const backing = new TextEncoder().encode("abcdefghijklmnopqrstuvwxyz");
  toUpperInPlace(backing.subarray(5, 21));
  assertEquals(
    new TextDecoder().decode(backing),
    "abcdeFGHIJKLMNOPQRSTUvwxyz",
  );
});

Deno.test("toUpperInPlace() is right on 1 MiB of random bytes", () => {
  const bytes = randomBytes(1 << 20);
  const expected = expectedUpper(bytes);
  toUpperInPlace(bytes);
  assertSameBytes(bytes, expected);
});
