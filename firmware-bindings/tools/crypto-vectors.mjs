#!/usr/bin/env node
/**
 * crypto-vectors.mjs - writes firmware-bindings/vectors/crypto.hex, the vectors the C crypto tests
 * (firmware-bindings/tests/test_crypto.c) check mk_crypto.h against.
 *
 * Expected values come from the TypeScript core (src/core/cogen.ts: raw-scalar public keys, scalar sums, the
 * unclamped-ladder agreement, raw-scalar signatures) and, wherever a standard primitive is involved, from
 * node:crypto (SHA-512, X25519 agreement with a clamped peer key, ChaCha20-Poly1305 boxes, Ed25519 signatures);
 * every value that both can compute is asserted equal here, so the file also proves the TS core interoperates.
 * Deterministic: scalars, peer keys, ephemeral keys and signing randomness are derived from fixed labels.
 *
 *   npm run build && node firmware-bindings/tools/crypto-vectors.mjs          (re)write the file from dist/
 *   node firmware-bindings/tools/crypto-vectors.mjs --check                   exit 1 if the file differs
 *
 * test/device/firmware-crypto.test.ts imports generateCryptoVectors() with the src/ modules and compares.
 */
import { writeOrCheck } from './vector-file.mjs';
import {
  createCipheriv,
  createHash,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  sign as nodeSign,
  verify as nodeVerify,
} from 'node:crypto';
import { Buffer } from 'node:buffer';
import process from 'node:process';
import { URL, fileURLToPath, pathToFileURL } from 'node:url';

const P = 2n ** 255n - 19n;
const X_PKCS8 = Buffer.from('302e020100300506032b656e04220420', 'hex');
const X_SPKI = Buffer.from('302a300506032b656e032100', 'hex');
const ED_PKCS8 = Buffer.from('302e020100300506032b657004220420', 'hex');
const ED_SPKI = Buffer.from('302a300506032b6570032100', 'hex');

const hex = (b) => Buffer.from(b).toString('hex');
const utf8 = (s) => new Uint8Array(Buffer.from(s, 'utf8'));
const cat = (...parts) => new Uint8Array(Buffer.concat(parts.map((p) => Buffer.from(p))));
const sha512 = (...parts) => {
  const h = createHash('sha512');
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
};
const le = (n, len = 32) => {
  const out = new Uint8Array(len);
  let v = n;
  for (let i = 0; i < len; i++) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  if (v !== 0n) throw new RangeError(`value does not fit in ${len} bytes`);
  return out;
};
const fromLE = (b) => {
  let v = 0n;
  for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
  return v;
};
const derive = (label, i, len = 32) => sha512(utf8(`meshkit crypto vectors v1 ${label}`), Uint8Array.of(i)).slice(0, len);
const equal = (a, b) => Buffer.from(a).equals(Buffer.from(b));
function assert(cond, what) {
  if (!cond) throw new Error(`crypto-vectors: cross-check failed: ${what}`);
}
function throws(fn) {
  try {
    fn();
    return false;
  } catch {
    return true;
  }
}

const xPrivate = (k) => createPrivateKey({ key: Buffer.concat([X_PKCS8, k]), format: 'der', type: 'pkcs8' });
const xPublic = (u) => createPublicKey({ key: Buffer.concat([X_SPKI, u]), format: 'der', type: 'spki' });
const xPublicU = (priv) => new Uint8Array(createPublicKey(priv).export({ format: 'der', type: 'spki' }).subarray(12));
const edPrivate = (seed) => createPrivateKey({ key: Buffer.concat([ED_PKCS8, seed]), format: 'der', type: 'pkcs8' });
const edPublic = (pub) => createPublicKey({ key: Buffer.concat([ED_SPKI, pub]), format: 'der', type: 'spki' });
const edPublicRaw = (priv) => new Uint8Array(createPublicKey(priv).export({ format: 'der', type: 'spki' }).subarray(12));
const clampToScalar = (k, L) => {
  const c = Uint8Array.from(k);
  c[0] &= 248;
  c[31] = (c[31] & 127) | 64;
  return fromLE(c) % L;
};

/** MKBOX1 (docs/enrollment.md) sealed with node:crypto: X25519 ephemeral, SHA-512 KDF, ChaCha20-Poly1305. */
function sealNode(ephPriv32, recipientU, label, plaintext) {
  const eph = xPrivate(ephPriv32);
  const epk = xPublicU(eph);
  const shared = new Uint8Array(diffieHellman({ privateKey: eph, publicKey: xPublic(recipientU) }));
  const okm = sha512(utf8('meshkit-box-v1'), Uint8Array.of(0), utf8(label), Uint8Array.of(0), shared, epk, recipientU);
  const cipher = createCipheriv('chacha20-poly1305', okm.subarray(0, 32), okm.subarray(32, 44), { authTagLength: 16 });
  cipher.setAAD(Buffer.from(label, 'ascii'), { plaintextLength: plaintext.length });
  const ct = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return { box: cat(epk, ct, cipher.getAuthTag()), shared, epk };
}

/**
 * The text of vectors/crypto.hex.
 * @param core the TypeScript core: { publicKeyFromScalar, montgomeryExtendedFromScalar, combineScalars,
 *   ecdhWithScalar, signWithScalar, edwardsToMontgomery, GROUP_ORDER } of src/core/cogen and { LOW_ORDER_U } of
 *   src/core/keys (from dist/ or, in the vitest run, from src/).
 * @returns the file content (LF line ends).
 * @throws Error when the TypeScript core and node:crypto disagree on any value both compute.
 */
export function generateCryptoVectors(core) {
  const L = core.GROUP_ORDER.Ed25519;
  const lines = [];
  const out = (name, input, expected) => lines.push(expected === undefined ? `${name}: ${hex(input)}` : `${name}: ${hex(input)} = ${hex(expected)}`);
  const comment = (text) => lines.push(...text.split('\n').map((t) => `# ${t}`.trimEnd()));

  comment(`Crypto vectors for mk_crypto.h (firmware-bindings/tests/test_crypto.c). GENERATED by
firmware-bindings/tools/crypto-vectors.mjs from the TypeScript core and node:crypto - do not edit.
Line format: "name: INPUT = EXPECTED" (must succeed with that result) or "name: INPUT" (must fail).
The operation is the name up to its first '-'. Scalars are 32 bytes little-endian, never clamped.
  sha512:     msg = SHA-512(msg)                                   (node:crypto)
  edpub:      s = Ed25519 public s*B                               (cogen publicKeyFromScalar)
  xpub:       s = X25519 extended public u || sign of s*B          (cogen montgomeryExtendedFromScalar; the
              xpub-node-* u equal node:crypto's X25519 public key of the 32-byte private key s came from)
  scalarbad:  s                 invalid (0 or >= L): check, public keys, agreement and signing all fail
  add:        a || b = (a + b) mod L  (cogen combineScalars);  addbad: a || b  (invalid input or zero sum)
  agree:      s || peer_u = shared  (cogen ecdhWithScalar; equal to node:crypto X25519(peer private,
              u of s*B) for the agree-node-* peers)
  agreebad:   s || peer_u       small-order peer: all-zero result
  open:       s || my_u || label_len (1) || label || box = plaintext length (2, big-endian) || plaintext
              (boxes sealed by node:crypto)
  openbad:    same input, must not open (tampered, wrong label, truncated, wrong key, small-order epk)
  verify:     pub || sig || msg = 01 (cogen signWithScalar or node:crypto Ed25519); verifybad: pub || sig || msg`);

  // ---------------------------------------------------------------------------------------------- SHA-512
  const msgs = [new Uint8Array(0), utf8('abc'), new Uint8Array(111).fill(0x61), new Uint8Array(112).fill(0x62),
    new Uint8Array(128).fill(0x63), Uint8Array.from({ length: 1000 }, (_, i) => (i * 7) & 0xff)];
  // (an empty input cannot be written in this format; test_crypto.c checks SHA-512("") against FIPS 180-4)
  msgs.forEach((m, i) => {
    if (m.length > 0) out(`sha512-${i}`, m, sha512(m));
  });

  // ---------------------------------------------------------------------------------------------- scalars
  const named = [
    ['one', 1n], ['two', 2n], ['three', 3n], ['four', 4n], ['five', 5n], ['six', 6n], ['seven', 7n], ['eight', 8n],
    ['nine', 9n], ['2p252m1', 2n ** 252n - 1n], ['2p252', 2n ** 252n], ['Lm1', L - 1n], ['Lm2', L - 2n],
    ['Lm8', L - 8n],
  ];
  for (let i = 0; i < 12; i++) named.push([`det${i}`, fromLE(sha512(derive('scalar', i))) % L || 1n]);
  const scalars = named.map(([name, s]) => ({ name, s, b: le(s) }));

  for (const { name, s, b } of scalars) {
    const ed = core.publicKeyFromScalar('Ed25519', s);
    out(`edpub-${name}`, b, ed);
  }
  for (const { name, s, b } of scalars) {
    const x = core.montgomeryExtendedFromScalar('X25519', s);
    assert(equal(x, core.publicKeyFromScalar('X25519', s, { extended: true })), `xpub ${name} extended forms`);
    assert(equal(x.subarray(0, 32), core.publicKeyFromScalar('X25519', s)), `xpub ${name} ladder u`);
    assert(equal(x.subarray(0, 32), core.edwardsToMontgomery('Ed25519', core.publicKeyFromScalar('Ed25519', s))),
      `xpub ${name} Edwards map`);
    out(`xpub-${name}`, b, x);
  }
  // standard X25519 private keys: clamp(k) mod L is a raw scalar whose u node:crypto computes independently
  for (let i = 0; i < 4; i++) {
    const k = derive('node x25519 private', i);
    const s = clampToScalar(k, L);
    const u = xPublicU(xPrivate(k));
    const x = core.montgomeryExtendedFromScalar('X25519', s);
    assert(equal(x.subarray(0, 32), u), `xpub-node-${i}: TS u equals node:crypto`);
    out(`xpub-node-${i}`, le(s), cat(u, x.subarray(32)));
  }

  const bad = [['zero', 0n], ['L', L], ['Lp1', L + 1n], ['Lp8', L + 8n], ['2p255', 2n ** 255n], ['max', 2n ** 256n - 1n]];
  for (const [name, v] of bad) out(`scalarbad-${name}`, le(v));

  // ---------------------------------------------------------------------------------------------- add
  for (let i = 0; i + 1 < scalars.length; i += 2) {
    const a = scalars[i];
    const b = scalars[i + 1];
    out(`add-${a.name}-${b.name}`, cat(a.b, b.b), le(core.combineScalars('Ed25519', a.s, b.s)));
  }
  out('add-Lm1-two', cat(le(L - 1n), le(2n)), le(core.combineScalars('Ed25519', L - 1n, 2n)));
  out('add-Lm1-Lm1', cat(le(L - 1n), le(L - 1n)), le(core.combineScalars('Ed25519', L - 1n, L - 1n)));
  out('add-det0-det0', cat(scalars[14].b, scalars[14].b), le(core.combineScalars('Ed25519', scalars[14].s, scalars[14].s)));
  assert(core.combineScalars('Ed25519', L - 1n, 1n) === 0n, 'L-1 + 1 = 0');
  out('addbad-sum-zero', cat(le(L - 1n), le(1n)));
  out('addbad-sum-zero-det', cat(scalars[15].b, le(L - scalars[15].s)));
  out('addbad-a-zero', cat(le(0n), le(5n)));
  out('addbad-b-zero', cat(le(5n), le(0n)));
  out('addbad-a-L', cat(le(L), le(5n)));
  out('addbad-b-Lp1', cat(le(5n), le(L + 1n)));

  // ---------------------------------------------------------------------------------------------- agreement
  const peers = [];
  for (let i = 0; i < 4; i++) {
    const priv = xPrivate(derive('node x25519 peer', i));
    peers.push({ priv, u: xPublicU(priv) });
  }
  const agreeScalars = scalars;
  agreeScalars.forEach(({ name, s, b }, i) => {
    const peer = peers[i % peers.length];
    const myU = core.montgomeryExtendedFromScalar('X25519', s).subarray(0, 32);
    const viaNode = new Uint8Array(diffieHellman({ privateKey: peer.priv, publicKey: xPublic(myU) }));
    const viaTs = core.ecdhWithScalar('X25519', s, peer.u);
    assert(equal(viaNode, viaTs), `agree ${name}: node:crypto X25519 equals ecdhWithScalar`);
    out(`agree-node-${name}`, cat(b, peer.u), viaNode);
  });
  {
    // bit 255 of the peer u is ignored (RFC 7748); node:crypto agrees
    const { name, s, b } = scalars[16];
    const u = Uint8Array.from(peers[0].u);
    u[31] |= 0x80;
    const viaTs = core.ecdhWithScalar('X25519', s, u);
    const myU = core.montgomeryExtendedFromScalar('X25519', s).subarray(0, 32);
    assert(equal(viaTs, diffieHellman({ privateKey: peers[0].priv, publicKey: xPublic(myU) })), 'agree bit 255');
    out(`agree-bit255-${name}`, cat(b, u), viaTs);
    // a twist point (not on the curve): the ladder still runs, TS and C must agree
    const twist = le(2n);
    out(`agree-twist-${name}`, cat(b, twist), core.ecdhWithScalar('X25519', s, twist));
    // extended peer keys: the device agrees with the u part only; an extended key of a device scalar
    const other = scalars[17];
    const otherX = core.montgomeryExtendedFromScalar('X25519', other.s);
    const ab = core.ecdhWithScalar('X25519', s, otherX);
    const ba = core.ecdhWithScalar('X25519', other.s, core.montgomeryExtendedFromScalar('X25519', s));
    assert(equal(ab, ba), 'raw-scalar agreement is symmetric');
    out(`agree-raw-${name}-${other.name}`, cat(b, otherX.subarray(0, 32)), ab);
  }
  const lowOrder = [...core.LOW_ORDER_U.X25519, P, P + 1n];
  lowOrder.forEach((u, i) => {
    const { s, b } = scalars[(i * 3) % scalars.length];
    const ub = le(u % 2n ** 256n);
    assert(throws(() => core.ecdhWithScalar('X25519', s, ub)), `agreebad ${i} rejected by TS`);
    out(`agreebad-low-order-${i}`, cat(b, ub));
  });
  {
    const ub = le(core.LOW_ORDER_U.X25519[3]);
    ub[31] |= 0x80;
    out('agreebad-low-order-bit255', cat(scalars[3].b, ub));
  }

  // ---------------------------------------------------------------------------------------------- boxes
  const cborish = cat(Uint8Array.of(0xa6, 0x01, 0x58, 0x20), derive('contribution', 1), Uint8Array.of(0x02, 0x58, 0x20),
    derive('contribution', 2), Uint8Array.of(0x03, 0x58, 0x20), derive('contribution', 3));
  const config = Uint8Array.from({ length: 1024 }, (_, i) => (i * 13 + 5) & 0xff);
  const plaintexts = [['empty', new Uint8Array(0)], ['hello', utf8('hello')], ['contribution', cborish], ['config1024', config]];
  const boxInput = (b, myU, label, box) => cat(b, myU, Uint8Array.of(label.length), utf8(label), box);
  const recipients = [scalars[0], scalars[11], scalars[18], scalars[21]];
  let boxIndex = 0;
  let keep;
  for (const r of recipients) {
    const myU = core.montgomeryExtendedFromScalar('X25519', r.s).subarray(0, 32);
    for (const [pname, pt] of plaintexts) {
      const label = boxIndex % 2 === 0 ? 'contribution' : 'config';
      const { box, shared, epk } = sealNode(derive('ephemeral', boxIndex), myU, label, pt);
      assert(equal(shared, core.ecdhWithScalar('X25519', r.s, epk)), `box ${boxIndex}: device agreement equals node:crypto`);
      out(`open-${r.name}-${pname}-${label}`, boxInput(r.b, myU, label, box), cat(Uint8Array.of(pt.length >> 8, pt.length & 0xff), pt));
      if (pname === 'hello' && keep === undefined) keep = { r, myU, label, box };
      boxIndex++;
    }
  }
  {
    const { r, myU, label, box } = keep;
    const other = label === 'config' ? 'contribution' : 'config';
    const flip = (i) => {
      const t = Uint8Array.from(box);
      t[(i + t.length) % t.length] ^= 0x01;
      return t;
    };
    out('openbad-tag-last-byte', boxInput(r.b, myU, label, flip(-1)));
    out('openbad-tag-first-byte', boxInput(r.b, myU, label, flip(-16)));
    out('openbad-ciphertext-byte', boxInput(r.b, myU, label, flip(32)));
    out('openbad-epk-byte', boxInput(r.b, myU, label, flip(0)));
    out('openbad-wrong-label', boxInput(r.b, myU, other, box));
    out('openbad-label-suffix', boxInput(r.b, myU, `${label}x`, box));
    out('openbad-truncated-1', boxInput(r.b, myU, label, box.subarray(0, box.length - 1)));
    out('openbad-47-bytes', boxInput(r.b, myU, label, box.subarray(0, 47)));
    out('openbad-empty', boxInput(r.b, myU, label, new Uint8Array(0)));
    out('openbad-extra-byte', boxInput(r.b, myU, label, cat(box, Uint8Array.of(0))));
    out('openbad-wrong-scalar', boxInput(scalars[1].b, myU, label, box));
    out('openbad-wrong-my-u', boxInput(r.b, core.montgomeryExtendedFromScalar('X25519', 2n).subarray(0, 32), label, box));
    out('openbad-epk-zero', boxInput(r.b, myU, label, cat(new Uint8Array(32), box.subarray(32))));
    out('openbad-epk-one', boxInput(r.b, myU, label, cat(le(1n), box.subarray(32))));
    out('openbad-invalid-scalar', boxInput(le(L), myU, label, box));
  }

  // ---------------------------------------------------------------------------------------------- signatures
  const VALID = Uint8Array.of(1);
  const sigMsgs = [new Uint8Array(0), utf8('meshkit-receipt-v1\0'), derive('message', 0, 64), config];
  let sigIndex = 0;
  let keepSig;
  for (const { name, s } of scalars.filter((_, i) => i % 3 === 0)) {
    const msg = sigMsgs[sigIndex % sigMsgs.length];
    const pub = core.publicKeyFromScalar('Ed25519', s);
    const sig = core.signWithScalar('Ed25519', s, msg, { random: derive('sign random', sigIndex) });
    assert(nodeVerify(null, msg, edPublic(pub), sig), `verify ${name}: node:crypto accepts the TS signature`);
    out(`verify-ts-${name}`, cat(pub, sig, msg), VALID);
    if (keepSig === undefined && msg.length > 0) keepSig = { pub, sig, msg };
    sigIndex++;
  }
  for (let i = 0; i < 3; i++) {
    const priv = edPrivate(derive('node ed25519 seed', i));
    const msg = sigMsgs[(i + 1) % sigMsgs.length];
    out(`verify-node-${i}`, cat(edPublicRaw(priv), new Uint8Array(nodeSign(null, msg, priv)), msg), VALID);
  }
  {
    const { pub, sig, msg } = keepSig;
    const tweak = (bytes, i) => {
      const t = Uint8Array.from(bytes);
      t[i] ^= 0x01;
      return t;
    };
    const cases = [
      ['R-bit', pub, tweak(sig, 0), msg],
      ['S-bit', pub, tweak(sig, 40), msg],
      ['message', pub, sig, tweak(msg, 0)],
      ['message-longer', pub, sig, cat(msg, Uint8Array.of(0))],
      ['wrong-key', core.publicKeyFromScalar('Ed25519', 2n), sig, msg],
      ['S-plus-L', pub, cat(sig.subarray(0, 32), le(fromLE(sig.subarray(32)) + L)), msg],
    ];
    for (const [name, p, sg, m] of cases) {
      assert(!nodeVerify(null, m, edPublic(p), sg), `verifybad ${name}: node:crypto rejects`);
      out(`verifybad-${name}`, cat(p, sg, m));
    }
    // strict rules (libsodium): a small-order public key (the identity) with R = identity, S = 0
    const identity = le(1n);
    out('verifybad-identity-key', cat(identity, identity, new Uint8Array(32), msg));
  }
  return `${lines.join('\n')}\n`;
}

const isMain = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;
if (isMain) {
  const dist = new URL('../../dist/core/', import.meta.url);
  const cogen = await import(new URL('cogen.js', dist).href);
  const keys = await import(new URL('keys.js', dist).href);
  const text = generateCryptoVectors({ ...cogen, LOW_ORDER_U: keys.LOW_ORDER_U });
  const file = fileURLToPath(new URL('../vectors/crypto.hex', import.meta.url));
  writeOrCheck(file, text, 'crypto-vectors.mjs');
}
