// Copyright the upcase authors. MIT license.
/**
 * Each scenario as the generator runs it (its arguments) and how long that
 * takes, at worst and as a rule.
 *
 * @module
 */

import { TLS_CA } from "./_paths.ts";
import { START_TIMEOUT_MS, STOP_TIMEOUT_MS } from "./_servers.ts";
import {
  baseScenario,
  isTls,
  type Scenario,
  type Settings,
} from "./_settings.ts";

/** What the generator gets through one TLS connection, at least, in
 * bytes per second: for the time a TLS stream usually takes. */
const TLS_STREAM_RATE = 0.2e9;

/**
 * The generator's arguments for one scenario.
 *
 * @param scenario The scenario.
 * @param port The server's port on 127.0.0.1.
 * @param s The settings.
 * @returns The arguments, the mode first.
 */
export function loadgenArgs(
  scenario: Scenario,
  port: number,
  s: Settings,
): string[] {
  const p = String(port);
  const tls = isTls(scenario) ? ["--tls", "--ca", TLS_CA] : [];
  switch (baseScenario(scenario)) {
    case "rtt":
      return [
        ...["rtt", "-p", p, "-c", String(s.rttConns), "-s", String(s.rttSize)],
        ...["-d", String(s.rttSeconds), "-w", String(s.warmupSeconds)],
        ...tls,
      ];
    case "stream":
      return [
        ...["stream", "-p", p, "-c", "1", "-t", String(s.streamBytes)],
        ...["-d", String(s.streamLimitSeconds)],
        ...tls,
      ];
    case "oneshot":
      return [
        ...["oneshot", "-p", p, "-c", String(s.oneshotInFlight)],
        ...["-s", String(s.oneshotSize), "-d", String(s.oneshotSeconds)],
        ...["-w", String(s.warmupSeconds)],
        ...tls,
      ];
    case "udp":
      return [
        ...["udp", "-p", p, "-c", String(s.udpInFlight)],
        ...["-s", String(s.udpSize), "-d", String(s.udpSeconds)],
        ...["-w", String(s.warmupSeconds), "-L", String(s.udpLossTimeoutMs)],
      ];
    case "idle":
      return [
        ...["idle", "-p", p, "-c", String(s.idleConns)],
        ...["-d", String(s.idleConnectLimitSeconds)],
        // The generator's own limit on the hold, in case its stdin stays open.
        ...["-H", String(s.idleHoldMs / 1000 + 20)],
      ];
  }
}

/**
 * The longest the generator may run before it is killed.
 *
 * @param scenario The scenario.
 * @param s The settings.
 * @returns Milliseconds.
 */
export function loadgenTimeoutMs(scenario: Scenario, s: Settings): number {
  switch (baseScenario(scenario)) {
    case "rtt":
      return (s.warmupSeconds + s.rttSeconds + 10) * 1000;
    case "stream":
      return (s.streamLimitSeconds + 10) * 1000;
    case "oneshot":
      return (s.warmupSeconds + s.oneshotSeconds + 10) * 1000;
    case "idle":
      return (s.idleConnectLimitSeconds + 25) * 1000 + s.idleHoldMs;
    case "udp":
      return (s.warmupSeconds + s.udpSeconds + 10) * 1000;
  }
}

/**
 * The longest one run can take (start, generator, stop).
 *
 * @param scenario The scenario.
 * @param s The settings.
 * @returns Seconds.
 */
export function worstCaseSeconds(scenario: Scenario, s: Settings): number {
  return (START_TIMEOUT_MS + loadgenTimeoutMs(scenario, s) + STOP_TIMEOUT_MS) /
      1000 + 2;
}

/**
 * What one run usually takes, for the estimate at the start and the time
 * left for runs done again.
 *
 * @param scenario The scenario.
 * @param s The settings.
 * @returns Seconds.
 */
export function typicalSeconds(scenario: Scenario, s: Settings): number {
  return 0.6 + typicalRunSeconds(scenario, s); // 0.5 s for waitForQuiet()
}

function typicalRunSeconds(scenario: Scenario, s: Settings): number {
  switch (baseScenario(scenario)) {
    case "rtt":
      return s.warmupSeconds + s.rttSeconds + 0.6;
    case "stream":
      return 0.6 + s.streamBytes / (isTls(scenario) ? TLS_STREAM_RATE : 0.5e9);
    case "oneshot":
      return s.warmupSeconds + s.oneshotSeconds + 0.6;
    case "idle":
      return 1.5 + s.idleHoldMs / 1000 + s.idleConns / 10_000;
    case "udp":
      return s.warmupSeconds + s.udpSeconds + 0.6;
  }
}
