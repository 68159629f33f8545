import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { fromB64u, utf8 } from '../../src/core/bytes.js';
import { ErrorCode, LogError } from '../../src/core/errors.js';
import {
  HashLog,
  inclusionProof,
  signLogHead,
  verifyInclusion,
  verifyLog,
  verifyLogHead,
} from '../../src/core/hashlog.js';
import { udfDigest } from '../../src/core/udf.js';
import { testKey, testSigner } from '../helpers/software-signer.js';
import type { PublicJwk } from '../../src/core/signer.js';

const T0 = '2026-01-02T03:04:05.000Z';

function buildLog(n: number): HashLog {
  const log = new HashLog();
  for (let i = 0; i < n; i++) log.append(i % 2 === 0 ? 'Step' : 'Note', { n: i, text: `entry ${i} é` }, T0);
  return log;
}

/** Runs `f`, expecting a LogError with `code` and (if given) `index`; returns its message. */
function expectLogError(f: () => unknown, code: string, index?: number): string {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(LogError);
    const le = e as LogError;
    expect(le.code).toBe(code);
    if (index !== undefined) expect(le.index).toBe(index);
    return le.message;
  }
  return expect.fail('expected a LogError');
}

describe('HashLog', () => {
  it('appends linked entries with the documented line format', () => {
    const log = new HashLog();
    expect(log.head).toEqual({ index: -1, id: null });
    const e0 = log.append('Start', { plan: 'p' }, T0);
    const e1 = log.append('Step', { k: [1, 2] }, new Date(T0));
    expect(e0.Index).toBe(0);
    expect(e0.Previous).toBeNull();
    expect(e1.Previous).toBe(e0.Id);
    expect(log.head).toEqual({ index: 1, id: e1.Id });
    const [l0, l1] = log.lines();
    expect(l0).toBe(`{"Index":0,"Previous":null,"Time":"${T0}","Type":"Start","Body":{"plan":"p"},"Id":"${e0.Id}"}`);
    // Id = UDF (application/meshkit-log-entry, 200 bits) of the line without its Id member.
    const withoutId = `{"Index":0,"Previous":null,"Time":"${T0}","Type":"Start","Body":{"plan":"p"}}`;
    expect(e0.Id).toBe(udfDigest(utf8(withoutId), { contentType: 'application/meshkit-log-entry', bits: 200 }));
    expect(e0.Id.replace(/-/g, '')).toHaveLength(40);
    expect(l1).toContain(`"Previous":"${e0.Id}"`);
    expect(verifyLog(log.lines())).toEqual({ count: 2, head: e1.Id });
    expect(HashLog.fromLines(log.lines()).head).toEqual(log.head);
  });

  it('continues a log loaded from lines', () => {
    const log = HashLog.fromLines(buildLog(3).lines());
    log.append('More', {}, T0);
    expect(verifyLog(log.lines()).count).toBe(4);
  });

  it('empty log', () => {
    expect(verifyLog([])).toEqual({ count: 0, head: null });
    expect(HashLog.fromLines([]).count).toBe(0);
  });

  it('checks append arguments', () => {
    const log = new HashLog();
    expect(() => log.append(1 as unknown as string, {})).toThrow(TypeError);
    expect(() => log.append('x', [] as unknown as Record<string, unknown>)).toThrow(TypeError);
    expect(() => log.append('x', {}, 'not a time')).toThrow(RangeError);
    expect(() => log.append('x', {}, 'Jan 1 2020')).toThrow(RangeError);
    expect(() => log.append('x', {}, new Date(NaN))).toThrow(RangeError);
    expect(() => log.append('x', { s: '\ud800' })).toThrow(TypeError);
    expect(log.count).toBe(0);
  });

  it('tampering with one byte of any line names that line (property)', () => {
    const log = buildLog(6);
    const lines = log.lines();
    fc.assert(
      fc.property(fc.integer({ min: 0, max: lines.length - 1 }), fc.nat(), fc.integer({ min: 1, max: 0x7e }), (li, pos, ch) => {
        const line = lines[li] ?? '';
        const at = pos % line.length;
        const replacement = String.fromCharCode(ch === line.charCodeAt(at) ? (ch % 0x7e) + 1 : ch);
        fc.pre(replacement !== line[at]);
        const tampered = [...lines];
        tampered[li] = line.slice(0, at) + replacement + line.slice(at + 1);
        expectLogError(() => verifyLog(tampered), ErrorCode.LOG_BROKEN, li);
      }),
      { numRuns: 300 },
    );
  });

  it('says what broke: bad JSON, index gap, wrong Previous, wrong Id', () => {
    const lines = buildLog(4).lines();
    const l2 = lines[2] ?? '';
    expect(expectLogError(() => verifyLog([...lines.slice(0, 2), `${l2} `]), ErrorCode.LOG_BROKEN, 2)).toMatch(/wrong Id/);
    expect(expectLogError(() => verifyLog([...lines.slice(0, 2), '{"Index":2']), ErrorCode.LOG_BROKEN, 2)).toMatch(/bad JSON/);
    expect(expectLogError(() => verifyLog([...lines.slice(0, 2), l2.replace('"Body":', '"Body":{},"Body":')]), ErrorCode.LOG_BROKEN, 2)).toMatch(/bad JSON/);
    // Drop a line: the next one has an index gap.
    expect(expectLogError(() => verifyLog([lines[0] ?? '', lines[2] ?? '', lines[3] ?? '']), ErrorCode.LOG_BROKEN, 1)).toMatch(/index gap/);
    // Reorder.
    expect(expectLogError(() => verifyLog([lines[0] ?? '', lines[2] ?? '', lines[1] ?? '', lines[3] ?? '']), ErrorCode.LOG_BROKEN, 1)).toMatch(/index gap/);
    // Insert an entry from another log with the right index: wrong Previous.
    const foreign = (() => {
      const l = new HashLog();
      l.append('Other', { a: 1 }, T0);
      l.append('Other', { a: 2 }, T0);
      return l.lines()[1] ?? '';
    })();
    expect(expectLogError(() => verifyLog([lines[0] ?? '', foreign]), ErrorCode.LOG_BROKEN, 1)).toMatch(/wrong Previous/);
    // Drop the first line.
    expectLogError(() => verifyLog(lines.slice(1)), ErrorCode.LOG_BROKEN, 0);
    // An extra member, even correctly hashed, is refused.
    const text = `{"Index":0,"Previous":null,"Time":"${T0}","Type":"x","Body":{},"Extra":1}`;
    const id = udfDigest(utf8(text), { contentType: 'application/meshkit-log-entry', bits: 200 });
    expect(expectLogError(() => verifyLog([`${text.slice(0, -1)},"Id":"${id}"}`]), ErrorCode.LOG_BROKEN, 0)).toMatch(/bad JSON/);
    // A non-array argument is a TypeError.
    expect(() => verifyLog('x' as unknown as string[])).toThrow(TypeError);
  });

  it('a line rewritten with a recomputed Id still breaks the next link', () => {
    const lines = buildLog(3).lines();
    const forged = new HashLog();
    forged.append('Step', { n: 0, text: 'forged' }, T0);
    const tampered = [forged.lines()[0] ?? '', lines[1] ?? '', lines[2] ?? ''];
    expectLogError(() => verifyLog(tampered), ErrorCode.LOG_BROKEN, 1);
  });
});

describe('signed head', () => {
  const admin = testKey('Ed25519');
  const other = testKey('Ed25519');
  const resolve = (kid: string): PublicJwk | undefined => (kid === admin.keyId ? admin.publicJwk : undefined);

  it('signs and verifies the head of a log', async () => {
    const log = buildLog(5);
    const jws = await signLogHead(log.head, testSigner(admin), T0);
    const header = JSON.parse(new TextDecoder().decode(fromB64u(jws.signatures[0]?.protected ?? ''))) as Record<string, unknown>;
    expect(header.cty).toBe('LogHead');
    expect(new TextDecoder().decode(fromB64u(jws.payload))).toBe(`{"LogHead":{"Count":5,"Head":"${log.head.id ?? ''}","Time":"${T0}"}}`);
    const v = await verifyLogHead(JSON.stringify(jws), log.lines(), resolve);
    expect(v).toEqual({ Count: 5, Head: log.head.id, Time: T0, keyId: admin.keyId });
  });

  it('empty log head', async () => {
    const jws = await signLogHead(new HashLog().head, testSigner(admin), T0);
    expect((await verifyLogHead(jws, [], resolve)).Count).toBe(0);
  });

  it('a head signed by a wrong key, or not matching the log, is refused', async () => {
    const log = buildLog(3);
    const byOther = await signLogHead(log.head, testSigner(other), T0);
    await expect(verifyLogHead(byOther, log.lines(), resolve)).rejects.toMatchObject({ code: ErrorCode.LOG_SIGNATURE });
    // The resolver handing out another key for the admin's kid does not help.
    await expect(verifyLogHead(await signLogHead(log.head, testSigner(admin), T0), log.lines(), () => other.publicJwk)).rejects.toMatchObject({ code: ErrorCode.LOG_SIGNATURE });
    const jws = await signLogHead(log.head, testSigner(admin), T0);
    log.append('Later', {}, T0);
    await expect(verifyLogHead(jws, log.lines(), resolve)).rejects.toMatchObject({ code: ErrorCode.LOG_SIGNATURE });
    await expect(verifyLogHead(jws, log.lines().slice(0, 2), resolve)).rejects.toMatchObject({ code: ErrorCode.LOG_SIGNATURE });
    // Right count, broken log: the log error comes through.
    const broken = log.lines().slice(0, 3);
    broken[1] = `${broken[1] ?? ''} `;
    await expect(verifyLogHead(jws, broken, resolve)).rejects.toMatchObject({ code: ErrorCode.LOG_BROKEN, index: 1 });
  });

  it('a JWS that is not a log head is refused', async () => {
    const log = buildLog(1);
    const { signJws } = await import('../../src/core/jose.js');
    const notHead = await signJws(utf8('{"LogHead":{"Count":1}}'), [testSigner(admin)], { cty: 'LogHead' });
    await expect(verifyLogHead(notHead, log.lines(), resolve)).rejects.toMatchObject({ code: ErrorCode.LOG_SIGNATURE });
    const wrongCty = await signJws(utf8(`{"LogHead":{"Count":1,"Head":"${log.head.id ?? ''}","Time":"${T0}"}}`), [testSigner(admin)], { cty: 'Other' });
    await expect(verifyLogHead(wrongCty, log.lines(), resolve)).rejects.toMatchObject({ code: ErrorCode.LOG_SIGNATURE });
  });

  it('checks signLogHead arguments', async () => {
    await expect(signLogHead({ index: 0, id: null }, testSigner(admin))).rejects.toThrow(RangeError);
    await expect(signLogHead({ index: -2, id: null }, testSigner(admin))).rejects.toThrow(RangeError);
  });
});

describe('inclusion proofs', () => {
  it('proves each entry up to the signed head', () => {
    const log = buildLog(6);
    const lines = log.lines();
    const head = { Count: 6, Head: log.head.id, Time: T0 };
    for (let i = 0; i < lines.length; i++) {
      const proof = inclusionProof(lines, i);
      expect(proof).toHaveLength(lines.length - i);
      expect(verifyInclusion(lines[i] ?? '', proof, head).Index).toBe(i);
    }
  });

  it('refuses proofs that do not hold', () => {
    const log = buildLog(5);
    const lines = log.lines();
    const head = { Count: 5, Head: log.head.id, Time: T0 };
    const proof = inclusionProof(lines, 2);
    // Not ending at the head.
    expectLogError(() => verifyInclusion(lines[2] ?? '', proof.slice(0, -1), head), ErrorCode.LOG_BROKEN);
    expectLogError(() => verifyInclusion(lines[2] ?? '', proof, { ...head, Count: 6 }), ErrorCode.LOG_BROKEN);
    // Not starting at the entry.
    expectLogError(() => verifyInclusion(lines[1] ?? '', proof, head), ErrorCode.LOG_BROKEN);
    // A link tampered.
    const bad = [...proof];
    bad[1] = (bad[1] ?? '').replace('"n":3', '"n":9');
    expectLogError(() => verifyInclusion(lines[2] ?? '', bad, head), ErrorCode.LOG_BROKEN, 3);
    // A forged entry with a recomputed Id does not link.
    const forged = new HashLog();
    forged.append('Step', { n: 0 }, T0);
    forged.append('Step', { n: 1 }, T0);
    forged.append('Step', { n: 2 }, T0);
    const f2 = forged.lines()[2] ?? '';
    expectLogError(() => verifyInclusion(f2, [f2, ...proof.slice(1)], head), ErrorCode.LOG_BROKEN, 3);
    expect(() => inclusionProof(lines, 5)).toThrow(RangeError);
    expect(() => inclusionProof([], 0)).toThrow(RangeError);
  });
});
