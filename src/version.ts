// Copyright the upcase authors. MIT license.
/**
 * The package version, from deno.json.
 *
 * @module
 */

import denoJson from "../deno.json" with { type: "json" };

/**
 * The version of upcase, as in deno.json.
 *
 * @example Usage
 * ```ts
 * import { VERSION } from "@upcase/upcase";
 * import { assertMatch } from "@std/assert";
 *
 * assertMatch(VERSION, /^\d+\.\d+\.\d+/);
 * ```
 */
export const VERSION: string = denoJson.version;
