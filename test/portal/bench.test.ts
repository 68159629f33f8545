/**
 * Smoke test of the portal bench section (src/bench/portal.ts) on a tiny workload, SQLite only: it
 * runs end to end and reports well-formed figures. No timing assertions (figures live in `npm run bench`).
 */
import { describe, expect, it } from 'vitest';
import { benchPortal } from '../../src/bench/portal.js';

describe('benchPortal', () => {
  it('reports publish and fetch figures with a finite verified-publish / raw-verify ratio', async () => {
    const { figures, skipped } = await benchPortal({ publishes: 24, fetches: 48, concurrency: 8, backends: ['sqlite'] });
    expect(skipped).toEqual([]);
    expect(figures.map((f) => f.name)).toEqual([
      'portal (sqlite): verified publishes of a Device Profile, 8 in flight',
      'portal (sqlite): fetches of a Device Profile by identifier, 8 in flight',
    ]);
    const [publish, fetch] = figures;
    expect(publish?.ratio).toBeGreaterThan(0);
    expect(Number.isFinite(publish?.ratio)).toBe(true);
    expect(publish?.note).toMatch(/publishes\/s vs \d+ raw verifies\/s .*p50 [\d.]+ ms, p99 [\d.]+ ms; 24 publishes/);
    expect(fetch?.note).toMatch(/fetches\/s; latency p50 [\d.]+ ms, p99 [\d.]+ ms; 48 fetches/);
  });
});
