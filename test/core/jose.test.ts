import { readFileSync } from 'node:fs';
import { createPublicKey } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import * as jose from 'jose';
import * as jose5 from 'jose5';
import { b64u, fromB64u, utf8 } from '../../src/core/bytes.js';
import { ErrorCode, isMeshkitError } from '../../src/core/errors.js';
import {
  decryptJwe,
  decryptJweDirect,
  encryptJwe,
  encryptJweDirect,
  jwsSigningInput,
  parseJsonStrict,
  signJws,
  verifyJws,
  verifyJwsAll,
  verifySignatureValue,
  type JweGeneral,
  type JwsGeneral,
} from '../../src/core/jose.js';
import { publicKeyFromJwk, type PublicKey } from '../../src/core/keys.js';
import type { Curve, PublicJwk } from '../../src/core/signer.js';
import { testDecrypter, testKey, testSigner, type TestKey } from '../helpers/software-signer.js';

/** Awaits `p` and asserts it rejects with a MeshkitError of `code`. */
async function expectCode(p: Promise<unknown> | (() => unknown), code: string): Promise<void> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    if (!isMeshkitError(e)) throw e;
    expect(e.code).toBe(code);
    return;
  }
  expect.fail(`expected ${code}, but it succeeded`);
}

function resolverFor(...keys: TestKey[]) {
  return (kid: string): PublicJwk | undefined => keys.find((k) => k.keyId === kid)?.publicJwk;
}

const decodeJson = (s: string): Record<string, unknown> => JSON.parse(new TextDecoder().decode(fromB64u(s))) as Record<string, unknown>;
const encodeJson = (v: unknown): string => b64u(utf8(JSON.stringify(v)));

/** Flips one bit of the byte at `i` of a base64url value. */
function tamperB64(s: string, i = 0): string {
  const b = fromB64u(s);
  b[i] = (b[i] ?? 0) ^ 0x01;
  return b64u(b);
}

const payload = utf8('{"MasterProfile":{"Identifier":"MB2G-K6DF"}}');

// ---------------------------------------------------------------------------------------------
describe('parseJsonStrict', () => {
  it('agrees with JSON.parse on JSON it produces (property)', () => {
    fc.assert(
      fc.property(fc.json({ depthSize: 'small', noUnicodeString: false }), (text) => {
        expect(parseJsonStrict(text)).toStrictEqual(JSON.parse(text));
      }),
      { numRuns: 500 },
    );
  });

  it('parses whitespace, escapes, numbers and surrogate pairs', () => {
    expect(parseJsonStrict(' {"a" : [1, -0.5e+3, 0, true, false, null], "b":"\\u00e9\\n\\"\\/\\ud83d\\ude00😀"}\r\n\t')).toStrictEqual({
      a: [1, -500, 0, true, false, null],
      b: 'é\n"/😀😀',
    });
  });

  it('keeps __proto__ as an own member, like JSON.parse', () => {
    const v = parseJsonStrict('{"__proto__":{"x":1}}') as Record<string, unknown>;
    expect(Object.getPrototypeOf(v)).toBe(Object.prototype);
    expect(Object.keys(v)).toEqual(['__proto__']);
  });

  it.each([
    ['duplicate top-level member', '{"a":1,"a":2}', 7],
    ['duplicate nested member', '{"x":{"b":1,"c":{"d":1,"d":1}}}', 23],
    ['duplicate inside an array element', '[{"k":1},{"k":1,"k":2}]', 16],
    ['raw newline in a string', '{"a":"x\ny"}', 7],
    ['raw NUL in a string', '"\u0000"', 1],
    ['raw lone high surrogate', '"\ud800"', 1],
    ['raw lone low surrogate', '"\udc00x"', 1],
    ['escaped lone surrogate', '"\\ud800x"', 1],
    ['escaped reversed pair', '"\\udc00\\ud800"', 1],
    ['trailing garbage', '{"a":1} x', 8],
    ['two values', '1 2', 2],
    ['trailing comma in object', '{"a":1,}', 7],
    ['trailing comma in array', '[1,]', 3],
    ['leading zero', '01', 1],
    ['bare minus', '-', 0],
    ['fraction without digits', '1.', 1],
    ['leading plus', '+1', 0],
    ['single quotes', "{'a':1}", 1],
    ['invalid escape', '"\\x"', 1],
    ['short unicode escape', '"\\u12"', 3],
    ['unterminated string', '"abc', 4],
    ['empty input', '', 0],
    ['NaN', 'NaN', 0],
    ['number overflow', '1e400', 0],
  ])('rejects %s with ERR_JSON_INVALID at its position', (_name, text, position) => {
    let error: unknown;
    try {
      parseJsonStrict(text);
    } catch (e) {
      error = e;
    }
    expect(isMeshkitError(error, ErrorCode.JSON_INVALID)).toBe(true);
    expect((error as Error).message).toContain(`position ${position}:`);
  });

  it('bounds nesting depth at 64', () => {
    expect(() => parseJsonStrict('['.repeat(64) + ']'.repeat(64))).not.toThrow();
    expect(() => parseJsonStrict('['.repeat(65) + ']'.repeat(65))).toThrow(/nesting deeper than 64/);
    expect(() => parseJsonStrict('{"a":'.repeat(65) + '1' + '}'.repeat(65))).toThrow(/nesting deeper than 64/);
  });

  it('rejects a non-string argument with TypeError', () => {
    expect(() => parseJsonStrict(42 as unknown as string)).toThrow(TypeError);
  });

  it('parses a 1,000-device profile exactly as JSON.parse does (its speed is measured by npm run bench)', () => {
    const devices = Array.from({ length: 1000 }, (_, i) => ({
      SignedDeviceProfile: {
        Identifier: `MDEV-${i}`,
        SignedData: { payload: 'x'.repeat(600), signatures: [{ protected: 'eyJhbGciOiJFZERTQSJ9', signature: 'y'.repeat(86) }] },
      },
    }));
    const text = JSON.stringify({ PersonalProfile: { Identifier: 'MASTER', Devices: devices, Names: ['é', 'Ω😀'] } });
    const parsed = parseJsonStrict(text);
    expect(parsed).toStrictEqual(JSON.parse(text));
  });
});

// ---------------------------------------------------------------------------------------------
interface Rfc8037Vector {
  id: string;
  comment: string;
  jwk?: { kty: string; crv: string; d: string; x: string };
  protectedJson?: string;
  protected?: string;
  payloadText?: string;
  payload?: string;
  signingInput?: string;
  signature?: string;
}
const rfc8037 = JSON.parse(readFileSync(new URL('../vectors/rfc8037.json', import.meta.url), 'utf8')) as { source: string; vectors: Rfc8037Vector[] };
const rfcKeyJwk = rfc8037.vectors.find((v) => v.id === 'A.1-A.2')?.jwk;
const rfcA4 = rfc8037.vectors.find((v) => v.id === 'A.4');

describe('RFC 8037 vectors', () => {
  if (rfcKeyJwk === undefined || rfcA4 === undefined) throw new Error('rfc8037.json: vectors A.1-A.2 / A.4 missing');
  const vecA4 = rfcA4 as Required<Rfc8037Vector>;

  it('rfc8037 A.1-A.2: the public key x follows from d', () => {
    const k = testKey('Ed25519', rfcKeyJwk);
    expect(k.publicJwk.x, 'rfc8037 A.1-A.2').toBe(rfcKeyJwk.x);
  });

  it('rfc8037 A.4: protected header and payload encode as in the RFC; signing input is exact', () => {
    expect(b64u(utf8(vecA4.protectedJson))).toBe(vecA4.protected);
    expect(b64u(utf8(vecA4.payloadText))).toBe(vecA4.payload);
    expect(new TextDecoder().decode(jwsSigningInput(vecA4.protected, vecA4.payload))).toBe(vecA4.signingInput);
  });

  it('rfc8037 A.4: a Signer over the RFC key reproduces the signature exactly', async () => {
    const signer = testSigner(testKey('Ed25519', rfcKeyJwk));
    const sig = await signer.sign(jwsSigningInput(vecA4.protected, vecA4.payload));
    expect(b64u(sig), 'rfc8037 A.4').toBe(vecA4.signature);
  });

  it('rfc8037 A.4: the signature verifies with the RFC public key; one flipped bit does not', async () => {
    const key = publicKeyFromJwk({ kty: 'OKP', crv: 'Ed25519', x: rfcKeyJwk.x });
    const input = jwsSigningInput(vecA4.protected, vecA4.payload);
    expect(await verifySignatureValue(key, 'EdDSA', input, fromB64u(vecA4.signature))).toBe(true);
    expect(await verifySignatureValue(key, 'EdDSA', input, fromB64u(tamperB64(vecA4.signature, 10)))).toBe(false);
    expect(await verifySignatureValue(key, 'ES256', input, fromB64u(vecA4.signature))).toBe(false);
  });

  it('rfc8037 A.4 in General form is refused by verifyJws: its kid is not protected (meshkit policy)', async () => {
    const general = { payload: vecA4.payload, signatures: [{ protected: vecA4.protected, signature: vecA4.signature }] };
    await expectCode(verifyJws(general, () => ({ kty: 'OKP', crv: 'Ed25519', x: rfcKeyJwk.x })), ErrorCode.JWS_INVALID);
    // With the kid unprotected it is refused too.
    const withHeader = { payload: vecA4.payload, signatures: [{ protected: vecA4.protected, header: { kid: 'x' }, signature: vecA4.signature }] };
    await expectCode(verifyJws(withHeader, () => undefined), ErrorCode.JWS_INVALID);
  });
});

// ---------------------------------------------------------------------------------------------
const signingCurves: Curve[] = ['Ed25519', 'Ed448', 'P-256'];
const keysByCurve = Object.fromEntries(signingCurves.map((c) => [c, testKey(c)])) as Record<string, TestKey>;
const k = (c: Curve): TestKey => {
  const v = keysByCurve[c];
  if (v === undefined) throw new Error(c);
  return v;
};

describe('signJws / verifyJws', () => {
  it.each(signingCurves)('%s: round trip, kid protected, received bytes returned', async (curve) => {
    const key = k(curve);
    const jws = await signJws(payload, [testSigner(key)], { cty: 'MasterProfile', typ: 'JOSE+JSON' });
    expect(jws.signatures).toHaveLength(1);
    const sig0 = jws.signatures[0];
    expect(sig0?.header).toBeUndefined();
    expect(new TextDecoder().decode(fromB64u(sig0?.protected ?? ''))).toBe(
      JSON.stringify({ alg: curve === 'P-256' ? 'ES256' : 'EdDSA', kid: key.keyId, cty: 'MasterProfile', typ: 'JOSE+JSON' }),
    );
    expect(fromB64u(sig0?.signature ?? '')).toHaveLength(curve === 'Ed448' ? 114 : 64);
    const v = await verifyJws(JSON.stringify(jws), resolverFor(key));
    expect(v.payload).toEqual(payload);
    expect(v.keyId).toBe(key.keyId);
    expect(v.key.curve).toBe(curve);
    expect(v.protectedHeader.cty).toBe('MasterProfile');
    // Accepts an object and UTF-8 bytes too.
    expect((await verifyJws(jws, resolverFor(key))).keyId).toBe(key.keyId);
    expect((await verifyJws(utf8(JSON.stringify(jws)), resolverFor(key))).keyId).toBe(key.keyId);
    // A resolver may return a PublicKey.
    expect((await verifyJws(jws, () => publicKeyFromJwk(key.publicJwk))).keyId).toBe(key.keyId);
  });

  it('several signatures: verifies the first one whose kid is known; verifyJwsAll checks all', async () => {
    const a = k('Ed25519');
    const b = k('Ed448');
    const c = k('P-256');
    const jws = await signJws(payload, [testSigner(a), testSigner(b), testSigner(c)]);
    expect((await verifyJws(jws, resolverFor(b, c))).keyId).toBe(b.keyId);
    expect((await verifyJws(jws, resolverFor(c))).keyId).toBe(c.keyId);
    await expectCode(verifyJws(jws, () => undefined), ErrorCode.JWS_INVALID);
    const all = await verifyJwsAll(jws, resolverFor(a, b, c));
    expect(all.map((x) => x.keyId)).toEqual([a.keyId, b.keyId, c.keyId]);
    await expectCode(verifyJwsAll(jws, resolverFor(a, b)), ErrorCode.JWS_INVALID);
    // A known key whose signature fails is an error even if a later one would verify.
    const broken: JwsGeneral = { ...jws, signatures: jws.signatures.map((s, i) => (i === 1 ? { ...s, signature: tamperB64(s.signature) } : s)) };
    await expectCode(verifyJws(broken, resolverFor(b, c)), ErrorCode.JWS_SIGNATURE);
    await expectCode(verifyJwsAll(broken, resolverFor(a, b, c)), ErrorCode.JWS_SIGNATURE);
  });

  it('the resolver receives the kid and the protected header', async () => {
    const a = k('Ed25519');
    const jws = await signJws(payload, [testSigner(a)], { cty: 'X' });
    const seen: Array<[string, Record<string, unknown>]> = [];
    await verifyJws(jws, (kid, header) => {
      seen.push([kid, header]);
      return a.publicJwk;
    });
    expect(seen).toEqual([[a.keyId, { alg: 'EdDSA', kid: a.keyId, cty: 'X' }]]);
  });

  it('opts.algorithms restricts the accepted algorithms', async () => {
    const c = k('P-256');
    const jws = await signJws(payload, [testSigner(c)]);
    await expectCode(verifyJws(jws, resolverFor(c), { algorithms: ['EdDSA'] }), ErrorCode.JWS_INVALID);
    expect((await verifyJws(jws, resolverFor(c), { algorithms: ['ES256'] })).keyId).toBe(c.keyId);
    await expect(verifyJws(jws, resolverFor(c), { algorithms: ['RS256' as 'EdDSA'] })).rejects.toThrow(RangeError);
  });

  it('signJws checks its arguments and its signers', async () => {
    const a = k('Ed25519');
    const b = k('Ed448');
    await expect(signJws('x' as unknown as Uint8Array, [testSigner(a)])).rejects.toThrow(TypeError);
    await expect(signJws(payload, [])).rejects.toThrow(RangeError);
    await expect(signJws(payload, [testSigner(a)], { cty: 1 as unknown as string })).rejects.toThrow(TypeError);
    // Signer returns a wrong-length signature.
    await expectCode(signJws(payload, [testSigner(a, { sign: async () => new Uint8Array(63) })]), ErrorCode.JWS_SIGNATURE);
    // Signer returns a right-length signature that does not verify.
    await expectCode(signJws(payload, [testSigner(a, { sign: async () => new Uint8Array(64) })]), ErrorCode.JWS_SIGNATURE);
    // Signer claims another key's id.
    await expectCode(signJws(payload, [testSigner(a, { keyId: b.keyId })]), ErrorCode.KEY_INVALID);
    // Signer claims an algorithm that does not fit its key.
    await expectCode(signJws(payload, [testSigner(a, { algorithm: 'ES256' })]), ErrorCode.KEY_INVALID);
    await expect(signJws(payload, [testSigner(a, { algorithm: 'none' as 'EdDSA' })])).rejects.toThrow(RangeError);
  });
});

// ---------------------------------------------------------------------------------------------
describe('verifyJws negative cases', () => {
  const a = k('Ed25519');
  const p = k('P-256');
  let good: JwsGeneral;
  const getGood = async (): Promise<JwsGeneral> => (good ??= await signJws(payload, [testSigner(a)], { cty: 'T' }));

  /** Builds a JWS whose protected header is `header`, signed by `key` over the standard input. */
  async function craft(header: unknown, key: TestKey, rawProtected?: string): Promise<JwsGeneral> {
    const protectedB64 = rawProtected ?? encodeJson(header);
    const payloadB64 = b64u(payload);
    const sig = await testSigner(key).sign(jwsSigningInput(protectedB64, payloadB64));
    return { payload: payloadB64, signatures: [{ protected: protectedB64, signature: b64u(sig) }] };
  }

  it('alg none', async () => {
    const jws = await craft({ alg: 'none', kid: a.keyId }, a);
    await expectCode(verifyJws(jws, resolverFor(a)), ErrorCode.JWS_INVALID);
  });

  it('alg or kid in the unprotected header', async () => {
    const jws = await getGood();
    const s = jws.signatures[0];
    if (s === undefined) throw new Error('no signature');
    for (const header of [{ kid: a.keyId }, { alg: 'EdDSA' }, { crit: ['x'] }, { b64: false }]) {
      await expectCode(verifyJws({ ...jws, signatures: [{ ...s, header }] }, resolverFor(a)), ErrorCode.JWS_INVALID);
    }
    // kid only unprotected (protected without kid): refused.
    const noKid = await craft({ alg: 'EdDSA' }, a);
    const ns = noKid.signatures[0];
    if (ns === undefined) throw new Error('no signature');
    await expectCode(verifyJws({ ...noKid, signatures: [{ ...ns, header: { kid: a.keyId } }] }, resolverFor(a)), ErrorCode.JWS_INVALID);
    // A harmless unprotected member is allowed, a duplicate of a protected one is not.
    expect((await verifyJws({ ...jws, signatures: [{ ...s, header: { note: 'x' } }] }, resolverFor(a))).keyId).toBe(a.keyId);
    await expectCode(verifyJws({ ...jws, signatures: [{ ...s, header: { cty: 'T' } }] }, resolverFor(a)), ErrorCode.JWS_INVALID);
  });

  it('unknown crit and b64:false in the protected header', async () => {
    await expectCode(verifyJws(await craft({ alg: 'EdDSA', kid: a.keyId, crit: ['exp'], exp: 1 }, a), resolverFor(a)), ErrorCode.JWS_INVALID);
    await expectCode(verifyJws(await craft({ alg: 'EdDSA', kid: a.keyId, b64: false, crit: ['b64'] }, a), resolverFor(a)), ErrorCode.JWS_INVALID);
  });

  it('EdDSA header with a P-256 key, ES256 header with an Ed25519 key', async () => {
    await expectCode(verifyJws(await craft({ alg: 'EdDSA', kid: p.keyId }, p), resolverFor(p)), ErrorCode.JWS_INVALID);
    await expectCode(verifyJws(await craft({ alg: 'ES256', kid: a.keyId }, a), resolverFor(a)), ErrorCode.JWS_INVALID);
  });

  it('an X25519 key can never verify', async () => {
    const x = testKey('X25519');
    const jws = await getGood();
    const fake = { ...jws, signatures: [{ protected: encodeJson({ alg: 'EdDSA', kid: x.keyId }), signature: jws.signatures[0]?.signature ?? '' }] };
    await expectCode(verifyJws(fake, () => x.publicJwk), ErrorCode.JWS_INVALID);
  });

  it('kid of key A with key B', async () => {
    const b = testKey('Ed25519');
    const jws = await getGood();
    // The resolver (wrongly) returns B for A's kid: refused because keyId(B) != kid.
    await expectCode(verifyJws(jws, () => b.publicJwk), ErrorCode.JWS_INVALID);
    // B signs a header naming A's kid: the resolver returns A, the signature fails.
    await expectCode(verifyJws(await craft({ alg: 'EdDSA', kid: a.keyId }, b), resolverFor(a)), ErrorCode.JWS_SIGNATURE);
  });

  it('duplicate JSON members: top level and inside the protected header', async () => {
    const jws = await getGood();
    const text = JSON.stringify(jws);
    await expectCode(verifyJws(text.replace('{"payload":', `{"payload":"${jws.payload}","payload":`), resolverFor(a)), ErrorCode.JSON_INVALID);
    const dupHeader = `{"alg":"EdDSA","kid":"${a.keyId}","kid":"${a.keyId}"}`;
    await expectCode(verifyJws(await craft(null, a, b64u(utf8(dupHeader))), resolverFor(a)), ErrorCode.JWS_INVALID);
    const dupAlg = `{"alg":"none","kid":"${a.keyId}","alg":"EdDSA"}`;
    await expectCode(verifyJws(await craft(null, a, b64u(utf8(dupAlg))), resolverFor(a)), ErrorCode.JWS_INVALID);
  });

  it('tampered payload, protected header or signature (one byte) fails', async () => {
    const jws = await getGood();
    const s = jws.signatures[0];
    if (s === undefined) throw new Error('no signature');
    await expectCode(verifyJws({ ...jws, payload: tamperB64(jws.payload, 3) }, resolverFor(a)), ErrorCode.JWS_SIGNATURE);
    await expectCode(verifyJws({ ...jws, signatures: [{ ...s, signature: tamperB64(s.signature, 40) }] }, resolverFor(a)), ErrorCode.JWS_SIGNATURE);
    // One byte of the protected header: change the cty value "T" to "U" (still valid JSON).
    const prot = new TextDecoder().decode(fromB64u(s.protected)).replace('"cty":"T"', '"cty":"U"');
    await expectCode(verifyJws({ ...jws, signatures: [{ ...s, protected: b64u(utf8(prot)) }] }, resolverFor(a)), ErrorCode.JWS_SIGNATURE);
  });

  it('truncated or non-canonical base64url', async () => {
    const jws = await getGood();
    const s = jws.signatures[0];
    if (s === undefined) throw new Error('no signature');
    await expectCode(verifyJws({ ...jws, signatures: [{ ...s, signature: s.signature.slice(0, -1) }] }, resolverFor(a)), ErrorCode.JWS_INVALID);
    await expectCode(verifyJws({ ...jws, payload: `${jws.payload}=` }, resolverFor(a)), ErrorCode.JWS_INVALID);
    await expectCode(verifyJws({ ...jws, payload: jws.payload.replace(/.$/, '+') }, resolverFor(a)), ErrorCode.JWS_INVALID);
  });

  it('wrong signature length', async () => {
    const jws = await getGood();
    const s = jws.signatures[0];
    if (s === undefined) throw new Error('no signature');
    const short = b64u(fromB64u(s.signature).subarray(0, 60));
    await expectCode(verifyJws({ ...jws, signatures: [{ ...s, signature: short }] }, resolverFor(a)), ErrorCode.JWS_SIGNATURE);
    const long = b64u(new Uint8Array([...fromB64u(s.signature), 0]));
    await expectCode(verifyJws({ ...jws, signatures: [{ ...s, signature: long }] }, resolverFor(a)), ErrorCode.JWS_SIGNATURE);
  });

  it('malformed shapes', async () => {
    const jws = await getGood();
    const s = jws.signatures[0];
    if (s === undefined) throw new Error('no signature');
    const cases: unknown[] = [
      '[]',
      { payload: 1, signatures: [s] },
      { payload: jws.payload, signatures: [] },
      { payload: jws.payload, signatures: {} },
      { payload: jws.payload },
      { payload: jws.payload, signatures: [{ signature: s.signature }] },
      { payload: jws.payload, signatures: [{ ...s, extra: 1 }] },
      { payload: jws.payload, signatures: [s], extra: 1 },
      { payload: jws.payload, protected: s.protected, signature: s.signature },
      { payload: jws.payload, signatures: [{ ...s, protected: b64u(utf8('[1]')) }] },
      { payload: jws.payload, signatures: [{ ...s, protected: b64u(new Uint8Array([0xff, 0xfe])) }] },
    ];
    for (const c of cases) await expectCode(verifyJws(c, resolverFor(a)), ErrorCode.JWS_INVALID);
    await expectCode(verifyJws('{"payload":', resolverFor(a)), ErrorCode.JSON_INVALID);
    await expect(verifyJws(42, resolverFor(a))).rejects.toThrow(TypeError);
    await expect(verifyJws(jws, 'x' as unknown as () => undefined)).rejects.toThrow(TypeError);
  });

  it('a resolver returning garbage is an invalid JWS', async () => {
    await expectCode(verifyJws(await getGood(), () => ({ kty: 'OKP', crv: 'Ed25519', x: 'AAAA' }) as PublicJwk), ErrorCode.JWS_INVALID);
  });
});

// ---------------------------------------------------------------------------------------------
describe('JWS interoperability', () => {
  it.each(['Ed25519', 'P-256'] as const)('%s: signJws output verifies with jose 6 generalVerify', async (curve) => {
    const key = k(curve);
    const jws = await signJws(payload, [testSigner(key)], { cty: 'X' });
    const r = await jose.generalVerify(jws, createPublicKey(key.privateKey));
    expect(r.payload).toEqual(payload);
    expect(r.protectedHeader?.kid).toBe(key.keyId);
  });

  it.each(['Ed25519', 'P-256'] as const)('%s: jose 6 GeneralSign output verifies with verifyJws', async (curve) => {
    const key = k(curve);
    const alg = curve === 'P-256' ? 'ES256' : 'EdDSA';
    const jws = await new jose.GeneralSign(payload).addSignature(key.privateKey).setProtectedHeader({ alg, kid: key.keyId }).sign();
    const v = await verifyJws(jws, resolverFor(key));
    expect(v.payload).toEqual(payload);
  });

  it('Ed448: signJws output verifies with jose 5, and jose 5 output verifies with verifyJws', async () => {
    const key = k('Ed448');
    const ours = await signJws(payload, [testSigner(key)]);
    const r = await jose5.generalVerify(ours, createPublicKey(key.privateKey));
    expect(r.payload).toEqual(payload);
    const theirs = await new jose5.GeneralSign(payload).addSignature(key.privateKey).setProtectedHeader({ alg: 'EdDSA', kid: key.keyId }).sign();
    expect((await verifyJws(theirs, resolverFor(key))).keyId).toBe(key.keyId);
  });

  it('jose 6 output with the kid only in the unprotected header is refused', async () => {
    const key = k('Ed25519');
    const jws = await new jose.GeneralSign(payload).addSignature(key.privateKey).setProtectedHeader({ alg: 'EdDSA' }).setUnprotectedHeader({ kid: key.keyId }).sign();
    await expect(jose.generalVerify(jws, createPublicKey(key.privateKey))).resolves.toBeDefined();
    await expectCode(verifyJws(jws, resolverFor(key)), ErrorCode.JWS_INVALID);
  });
});

// ---------------------------------------------------------------------------------------------
const encCurves: Curve[] = ['X25519', 'X448', 'P-256'];
const encKeys = Object.fromEntries(encCurves.map((c) => [c, testKey(c)])) as Record<string, TestKey>;
const ek = (c: Curve): TestKey => {
  const v = encKeys[c];
  if (v === undefined) throw new Error(c);
  return v;
};
const secret = utf8('application private data ✓');

describe('encryptJwe / decryptJwe', () => {
  it.each(encCurves)('%s: round trip, header shape', async (curve) => {
    const key = ek(curve);
    const jwe = await encryptJwe(secret, [key.publicJwk], { cty: 'ApplicationProfilePrivate' });
    expect(decodeJson(jwe.protected)).toEqual({ enc: 'A256GCM', cty: 'ApplicationProfilePrivate' });
    const rh = jwe.recipients[0]?.header ?? {};
    expect(Object.keys(rh)).toEqual(['alg', 'kid', 'epk']);
    expect(rh.alg).toBe('ECDH-ES+A256KW');
    expect(rh.kid).toBe(key.keyId);
    expect((rh.epk as PublicJwk).crv).toBe(curve);
    expect(fromB64u(jwe.recipients[0]?.encrypted_key ?? '')).toHaveLength(40);
    const r = await decryptJwe(JSON.stringify(jwe), testDecrypter(key));
    expect(r.plaintext).toEqual(secret);
    expect(r.protectedHeader).toEqual({ enc: 'A256GCM', cty: 'ApplicationProfilePrivate' });
  });

  it('several recipients of different curves, PublicKey recipients, and aad', async () => {
    const keys = encCurves.map(ek);
    const recipients: Array<PublicJwk | PublicKey> = [keys[0]?.publicJwk as PublicJwk, publicKeyFromJwk(keys[1]?.publicJwk), keys[2]?.publicJwk as PublicJwk];
    const jwe = await encryptJwe(secret, recipients, { aad: utf8('bound') });
    expect(jwe.aad).toBe(b64u(utf8('bound')));
    for (const key of keys) expect((await decryptJwe(jwe, testDecrypter(key))).plaintext).toEqual(secret);
    await expectCode(decryptJwe({ ...jwe, aad: b64u(utf8('other')) }, testDecrypter(ek('X25519'))), ErrorCode.JWE_DECRYPTION);
    const { aad: _dropped, ...withoutAad } = jwe;
    await expectCode(decryptJwe(withoutAad, testDecrypter(ek('X25519'))), ErrorCode.JWE_DECRYPTION);
  });

  it('an empty plaintext round-trips', async () => {
    const jwe = await encryptJwe(new Uint8Array(0), [ek('X25519').publicJwk]);
    expect((await decryptJwe(jwe, testDecrypter(ek('X25519')))).plaintext).toEqual(new Uint8Array(0));
  });

  it('refuses signature-only recipients and bad arguments', async () => {
    await expectCode(encryptJwe(secret, [k('Ed25519').publicJwk]), ErrorCode.KEY_INVALID);
    await expect(encryptJwe(secret, [])).rejects.toThrow(RangeError);
    await expect(encryptJwe('x' as unknown as Uint8Array, [ek('X25519').publicJwk])).rejects.toThrow(TypeError);
  });
});

describe('decryptJwe negative cases', () => {
  const x = ek('X25519');
  let jwe: JweGeneral;
  const get = async (): Promise<JweGeneral> => (jwe ??= await encryptJwe(secret, [x.publicJwk]));
  const withRecipient = (j: JweGeneral, f: (r: JweGeneral['recipients'][number]) => JweGeneral['recipients'][number]): JweGeneral => ({
    ...j,
    recipients: j.recipients.map(f),
  });

  it('wrong kid: no matching recipient', async () => {
    await expectCode(decryptJwe(await get(), testDecrypter(testKey('X25519'))), ErrorCode.JWE_NO_RECIPIENT);
    // The right key under a wrong kid does not help either.
    await expectCode(decryptJwe(await get(), testDecrypter(x, { keyId: 'MXXX-XXXX' })), ErrorCode.JWE_NO_RECIPIENT);
  });

  it('tampered ciphertext, tag, iv, protected header, encrypted_key', async () => {
    const j = await get();
    const d = testDecrypter(x);
    await expectCode(decryptJwe({ ...j, ciphertext: tamperB64(j.ciphertext, 2) }, d), ErrorCode.JWE_DECRYPTION);
    await expectCode(decryptJwe({ ...j, tag: tamperB64(j.tag, 15) }, d), ErrorCode.JWE_DECRYPTION);
    await expectCode(decryptJwe({ ...j, iv: tamperB64(j.iv, 0) }, d), ErrorCode.JWE_DECRYPTION);
    await expectCode(decryptJwe({ ...j, protected: encodeJson({ enc: 'A256GCM', cty: 'x' }) }, d), ErrorCode.JWE_DECRYPTION);
    await expectCode(decryptJwe(withRecipient(j, (r) => ({ ...r, encrypted_key: tamperB64(r.encrypted_key, 5) })), d), ErrorCode.JWE_DECRYPTION);
  });

  it('tampered epk (another valid point) and an epk off the curve', async () => {
    const j = await get();
    const d = testDecrypter(x);
    const other = testKey('X25519').publicJwk;
    await expectCode(decryptJwe(withRecipient(j, (r) => ({ ...r, header: { ...r.header, epk: other } })), d), ErrorCode.JWE_DECRYPTION);
    // P-256 point not on the curve.
    const p = ek('P-256');
    const pj = await encryptJwe(secret, [p.publicJwk]);
    const epk = pj.recipients[0]?.header.epk as PublicJwk;
    const offCurve = { ...epk, y: tamperB64(epk.y ?? '', 31) };
    let called = false;
    const spy = testDecrypter(p, { deriveSharedSecret: async () => { called = true; return new Uint8Array(32); } });
    await expectCode(decryptJwe(withRecipient(pj, (r) => ({ ...r, header: { ...r.header, epk: offCurve } })), spy), ErrorCode.JWE_DECRYPTION);
    expect(called).toBe(false);
    // epk of another curve than the recipient's.
    const x448 = testKey('X448').publicJwk;
    await expectCode(decryptJwe(withRecipient(j, (r) => ({ ...r, header: { ...r.header, epk: x448 } })), d), ErrorCode.JWE_DECRYPTION);
    // epk missing or carrying a private member.
    await expectCode(decryptJwe(withRecipient(j, (r) => ({ ...r, header: { alg: r.header.alg, kid: r.header.kid } })), d), ErrorCode.JWE_DECRYPTION);
  });

  it('an all-zero shared secret (low-order point) is refused', async () => {
    const spy = testDecrypter(x, { deriveSharedSecret: async () => new Uint8Array(32) });
    await expectCode(decryptJwe(await get(), spy), ErrorCode.JWE_DECRYPTION);
  });

  it('unsupported or malformed headers and shapes', async () => {
    const j = await get();
    const d = testDecrypter(x);
    await expectCode(decryptJwe({ ...j, protected: encodeJson({ enc: 'A128GCM' }) }, d), ErrorCode.JWE_INVALID);
    await expectCode(decryptJwe({ ...j, protected: encodeJson({ enc: 'A256GCM', zip: 'DEF' }) }, d), ErrorCode.JWE_INVALID);
    await expectCode(decryptJwe({ ...j, protected: encodeJson({ enc: 'A256GCM', crit: ['x'] }) }, d), ErrorCode.JWE_INVALID);
    await expectCode(decryptJwe({ ...j, unprotected: { enc: 'A256GCM' } }, d), ErrorCode.JWE_INVALID);
    await expectCode(decryptJwe(withRecipient(j, (r) => ({ ...r, header: { ...r.header, alg: 'ECDH-ES' } })), d), ErrorCode.JWE_INVALID);
    await expectCode(decryptJwe({ ...j, iv: b64u(new Uint8Array(16)) }, d), ErrorCode.JWE_INVALID);
    await expectCode(decryptJwe({ ...j, tag: b64u(new Uint8Array(12)) }, d), ErrorCode.JWE_INVALID);
    await expectCode(decryptJwe({ ...j, recipients: [] }, d), ErrorCode.JWE_INVALID);
    await expectCode(decryptJwe({ ...j, ciphertext: `${j.ciphertext}=` }, d), ErrorCode.JWE_INVALID);
    await expectCode(decryptJwe({ ...j, encrypted_key: 'x' }, d), ErrorCode.JWE_INVALID);
    const text = JSON.stringify(j).replace('{"protected":', `{"protected":"${j.protected}","protected":`);
    await expectCode(decryptJwe(text, d), ErrorCode.JSON_INVALID);
    const dupHeader = b64u(utf8('{"enc":"A256GCM","enc":"A256GCM"}'));
    await expectCode(decryptJwe({ ...j, protected: dupHeader }, d), ErrorCode.JWE_INVALID);
  });
});

describe('JWE interoperability', () => {
  it.each(['X25519', 'P-256'] as const)('%s: encryptJwe output decrypts with jose 6 generalDecrypt', async (curve) => {
    const key = ek(curve);
    const jwe = await encryptJwe(secret, [key.publicJwk], { cty: 'X', aad: utf8('a') });
    const r = await jose.generalDecrypt(jwe as jose.GeneralJWE, key.privateKey);
    expect(r.plaintext).toEqual(secret);
    expect(r.additionalAuthenticatedData).toEqual(utf8('a'));
  });

  it.each(['X25519', 'P-256'] as const)('%s: jose 6 GeneralEncrypt output decrypts with decryptJwe', async (curve) => {
    const key = ek(curve);
    const other = testKey(curve);
    const jwe = await new jose.GeneralEncrypt(secret)
      .setProtectedHeader({ enc: 'A256GCM', cty: 'X' })
      .addRecipient(createPublicKey(other.privateKey)).setUnprotectedHeader({ alg: 'ECDH-ES+A256KW', kid: other.keyId })
      .addRecipient(createPublicKey(key.privateKey)).setUnprotectedHeader({ alg: 'ECDH-ES+A256KW', kid: key.keyId })
      .encrypt();
    const r = await decryptJwe(jwe, testDecrypter(key));
    expect(r.plaintext).toEqual(secret);
    expect(r.protectedHeader.cty).toBe('X');
  });

  it('jose 6 output with apu/apv decrypts with decryptJwe', async () => {
    const key = ek('X25519');
    const jwe = await new jose.GeneralEncrypt(secret)
      .setProtectedHeader({ enc: 'A256GCM' })
      .addRecipient(createPublicKey(key.privateKey)).setUnprotectedHeader({ alg: 'ECDH-ES+A256KW', kid: key.keyId })
      .setKeyManagementParameters({ apu: utf8('Alice'), apv: utf8('Bob') })
      .encrypt();
    expect((await decryptJwe(jwe, testDecrypter(key))).plaintext).toEqual(secret);
  });

  it('X448: encryptJwe output decrypts with jose 5, and jose 5 output decrypts with decryptJwe', async () => {
    const key = ek('X448');
    const ours = await encryptJwe(secret, [key.publicJwk]);
    expect(new Uint8Array((await jose5.generalDecrypt(ours as jose5.GeneralJWE, key.privateKey)).plaintext)).toEqual(secret);
    const theirs = await new jose5.GeneralEncrypt(secret)
      .setProtectedHeader({ enc: 'A256GCM' })
      .addRecipient(createPublicKey(key.privateKey)).setUnprotectedHeader({ alg: 'ECDH-ES+A256KW', kid: key.keyId })
      .encrypt();
    expect((await decryptJwe(theirs, testDecrypter(key))).plaintext).toEqual(secret);
  });
});

describe('dir JWE', () => {
  const key = new Uint8Array(32).fill(7);

  it('round trips and decrypts with jose 6', async () => {
    const jwe = encryptJweDirect(secret, key, { kid: 'MBLOB', cty: 'EscrowedKeySet' });
    expect(decodeJson(jwe.protected)).toEqual({ alg: 'dir', enc: 'A256GCM', kid: 'MBLOB', cty: 'EscrowedKeySet' });
    expect(decryptJweDirect(jwe, key).plaintext).toEqual(secret);
    expect((await jose.generalDecrypt(jwe, key)).plaintext).toEqual(secret);
  });

  it('decrypts jose 6 dir output; rejects a wrong key or tampering', async () => {
    const theirs = await new jose.GeneralEncrypt(secret).setProtectedHeader({ alg: 'dir', enc: 'A256GCM' }).addRecipient(key).encrypt();
    expect(decryptJweDirect(theirs, key).plaintext).toEqual(secret);
    const jwe = encryptJweDirect(secret, key);
    await expectCode(() => decryptJweDirect(jwe, new Uint8Array(32)), ErrorCode.JWE_DECRYPTION);
    await expectCode(() => decryptJweDirect({ ...jwe, ciphertext: tamperB64(jwe.ciphertext) }, key), ErrorCode.JWE_DECRYPTION);
    await expectCode(() => decryptJweDirect({ ...jwe, recipients: [{ encrypted_key: 'AAAA' }] }, key), ErrorCode.JWE_INVALID);
    expect(() => encryptJweDirect(secret, new Uint8Array(31))).toThrow(RangeError);
  });
});
