/**
 * KeyOrigin generate-on-token-wrapped (docs/ceremony.md) on scratch SoftHSM tokens:
 * - the adapter pieces it needs (Pkcs11KeyStore.importAesKey / destroyAesKey / wrapKey and
 *   unwrapKey with an AES key handle and session targets / destroyKey / probeWrap / lockExtractable);
 * - a full P-256 ceremony: outputs verified by verifyCeremony, the blob holds only wrapped keys (and
 *   they really are wrapped under the shares' K: RFC 5649 unwrap on the host gives the keys of the
 *   Master Profile), the token keys end sensitive and non-extractable;
 * - recovery onto a fresh token from 3 of 5 shares in shuffled order: same UDFs, the keys sign and
 *   agree under the Master Profile keys; k−1 shares fail; a blob of the other origin is refused;
 * - an Ed448 plan is refused naming the token, CKM_AES_KEY_WRAP_PAD and CKR_KEY_NOT_WRAPPABLE;
 * - the crash sweep over run.ts's fault points for this origin (built CLI: `npm run build` first).
 */
import { createDecipheriv, createPrivateKey, createPublicKey, randomBytes, verify as nodeVerify } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromB64u, utf8 } from '../../src/core/bytes.js';
import { ErrorCode, isMeshkitError, UnsupportedError } from '../../src/core/errors.js';
import { escrowBlobId, openOfflineEscrowAny } from '../../src/core/escrow.js';
import { verifyLog } from '../../src/core/hashlog.js';
import { publicKeyFromJwk, publicKeyObject } from '../../src/core/keys.js';
import { readProfile, type MasterProfile } from '../../src/core/profiles.js';
import { combineShares } from '../../src/core/shamir.js';
import type { PublicJwk } from '../../src/core/signer.js';
import { CEREMONY_FAULT_POINTS, parsePlan, parseShareFile, runCeremony, type CeremonySummary } from '../../src/ceremony/index.js';
import { recoverCeremony } from '../../src/ceremony/recover.js';
import { verifyCeremony } from '../../src/ceremony/verify.js';
import { escrowApplicationKey, recoverApplicationKey } from '../../src/ceremony/online-escrow.js';
import { Pkcs11KeyStore } from '../../src/keystore/pkcs11/index.js';
import { softhsmMissing } from '../helpers/softhsm.js';
import { ceremonyHsm, fixture, meshkitCeremony, type CeremonyFixture } from '../helpers/ceremony.js';
import { testKey } from '../helpers/software-signer.js';

const P256 = { Signature: 'P-256', Escrow: 'P-256' } as const;
const LABELS = ['mesh-master-signature', 'mesh-master-escrow'];
const KWP_IV = Buffer.from('A65959A6', 'hex');

const planOf = (f: CeremonyFixture) => parsePlan(new Uint8Array(readFileSync(f.planPath)));

const err = async (p: Promise<unknown>): Promise<Error & { code?: string }> => {
  try {
    await p;
  } catch (e) {
    return e as Error & { code?: string };
  }
  throw new Error('expected a rejection');
};

/** Every object label on a token, read by pkcs11-tool in a fresh process (session objects of this process are not seen). */
function tokenLabels(f: Pick<CeremonyFixture, 'hsm' | 'env'>, tokenLabel: string, pin: string): string[] {
  const text = execFileSync('pkcs11-tool', ['--module', f.hsm.modulePath, '--token-label', tokenLabel, '--login', '--pin', pin, '--list-objects'], {
    env: f.env,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return [...text.matchAll(/^\s*label:\s*(.*)$/gm)].map((m) => (m[1] as string).trim());
}

function verifiesUnder(jwk: PublicJwk, msg: Uint8Array, sig: Uint8Array): boolean {
  const key = publicKeyObject(publicKeyFromJwk(jwk));
  return jwk.crv === 'P-256' ? nodeVerify('sha256', msg, { key, dsaEncoding: 'ieee-p1363' }, sig) : nodeVerify(null, msg, key, sig);
}

describe.skipIf(softhsmMissing !== undefined)('Pkcs11KeyStore: AES key import, wrap / unwrap with a handle, probes (SoftHSM)', () => {
  let store: Pkcs11KeyStore;
  const label = `Wrap-${process.pid % 100000}`;
  const pin = 'wpin-5521';
  beforeAll(async () => {
    const h = ceremonyHsm();
    h.addToken(label, pin);
    store = await Pkcs11KeyStore.open(h.uri(label), utf8(pin));
  });
  afterAll(async () => {
    await store?.close();
  });

  it('wraps under an imported session AES key what RFC 5649 unwraps on the host with the same K', async () => {
    const k = await store.generate('w-sign', 'P-256', { usage: 'sign', extractable: true });
    const K = new Uint8Array(randomBytes(32));
    const kek = await store.importAesKey('w-kek', K);
    expect(kek).toMatchObject({ label: 'w-kek', token: false, bits: 256 });
    const wrapped = await store.wrapKey(k, kek, 'CKM_AES_KEY_WRAP_PAD');
    const d = createDecipheriv('id-aes256-wrap-pad', K, KWP_IV);
    const pkcs8 = Buffer.concat([d.update(wrapped), d.final()]);
    const pub = createPublicKey(createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' })).export({ format: 'jwk' });
    expect({ x: pub.x, y: pub.y }).toEqual({ x: k.info.publicJwk.x, y: k.info.publicJwk.y });
    // Unwrap into session objects, sign, destroy exactly those (the token key stays).
    const copy = await store.unwrapKey(wrapped, kek, 'CKM_AES_KEY_WRAP_PAD', { label: 'w-sign-copy', publicJwk: k.info.publicJwk, token: false });
    const msg = utf8('signed by the session copy');
    expect(verifiesUnder(k.info.publicJwk, msg, await copy.signer().sign(msg))).toBe(true);
    await store.destroyKey(copy);
    expect((await store.list()).map((i) => i.label)).toEqual(['w-sign']);
    expect((await store.get('w-sign')).info.keyId).toBe(k.info.keyId);
    // Destroyed: the handle is refused, a second destroy is a no-op.
    await store.destroyAesKey(kek);
    await store.destroyAesKey(kek);
    await expect(store.wrapKey(k, kek)).rejects.toThrow(/was destroyed/);
    // Nothing of the session objects is on the token.
    expect(tokenLabels({ hsm: ceremonyHsm(), env: { ...process.env } as Record<string, string> }, label, pin).filter((l) => l !== 'w-sign')).toEqual([]);
  });

  it('unwrapping under the wrong K fails and leaves nothing', async () => {
    const k = await store.generate('w-sign-2', 'P-256', { usage: 'sign', extractable: true });
    const kek = await store.importAesKey('w-kek-2', new Uint8Array(randomBytes(32)));
    const other = await store.importAesKey('w-kek-3', new Uint8Array(randomBytes(32)));
    try {
      const wrapped = await store.wrapKey(k, kek);
      const e = await err(store.unwrapKey(wrapped, other, 'CKM_AES_KEY_WRAP_PAD', { label: 'w-bad', publicJwk: k.info.publicJwk }));
      expect(isMeshkitError(e)).toBe(true);
      expect((await store.list()).map((i) => i.label)).not.toContain('w-bad');
    } finally {
      await store.destroyAesKey(kek);
      await store.destroyAesKey(other);
    }
  });

  it('checks importAesKey arguments and refuses a taken label', async () => {
    await expect(store.importAesKey('x', new Uint8Array(31))).rejects.toThrow(RangeError);
    await expect(store.importAesKey('x', new Uint8Array(31))).rejects.toThrow(/"value" expected Uint8Array of length 16, 24 or 32|"value"/);
    await expect(store.importAesKey('x', 'k' as unknown as Uint8Array)).rejects.toThrow(TypeError);
    await expect(store.importAesKey('x', new Uint8Array(32), { token: 'no' as unknown as boolean })).rejects.toThrow(TypeError);
    const kek = await store.importAesKey('w-taken', new Uint8Array(32).fill(1));
    await expect(store.importAesKey('w-taken', new Uint8Array(32))).rejects.toMatchObject({ code: ErrorCode.KEYSTORE_EXISTS });
    await store.destroyAesKey(kek);
    await expect(store.destroyAesKey({ label: 'forged', token: false, bits: 256 })).rejects.toThrow(TypeError);
    await expect(store.wrapKey('w-sign', { label: 'forged', token: false, bits: 256 })).rejects.toThrow(TypeError);
  });

  it('probeWrap: SoftHSM wraps P-256 private keys, not Ed448 (CKR_KEY_NOT_WRAPPABLE); nothing is left', async () => {
    const before = (await store.list()).length;
    await expect(store.probeWrap('P-256')).resolves.toEqual({ curve: 'P-256', mechanism: 'CKM_AES_KEY_WRAP_PAD', wrappable: true });
    await expect(store.probeWrap('Ed448')).resolves.toEqual({ curve: 'Ed448', mechanism: 'CKM_AES_KEY_WRAP_PAD', wrappable: false, reason: 'CKR_KEY_NOT_WRAPPABLE' });
    expect((await store.list()).length).toBe(before);
    await expect(store.probeWrap('P-384' as never)).rejects.toThrow(RangeError);
  });

  it('lockExtractable: once locked, the key cannot be wrapped any more', async () => {
    const k = await store.generate('w-lock', 'P-256', { usage: 'derive', extractable: true });
    const kek = await store.importAesKey('w-kek-lock', new Uint8Array(randomBytes(32)));
    try {
      await store.wrapKey(k, kek);
      expect(await store.lockExtractable(k)).toBe(true);
      expect((await store.get('w-lock')).info.extractable).toBe(false);
      const e = await err(store.wrapKey(k, kek));
      expect(e).toBeInstanceOf(UnsupportedError);
      expect(e.message).toMatch(/CKR_KEY_UNEXTRACTABLE/);
    } finally {
      await store.destroyAesKey(kek);
    }
  });
});

describe.skipIf(softhsmMissing !== undefined)('ceremony generate-on-token-wrapped (P-256, SoftHSM)', () => {
  let f: CeremonyFixture;
  let summary: CeremonySummary;
  let master: MasterProfile;
  let n = 0;

  beforeAll(async () => {
    f = await fixture({ origin: 'generate-on-token-wrapped', algorithms: P256 });
    summary = await runCeremony(planOf(f), { out: f.out, secrets: f.secrets, operator: 'Olivia' });
    master = readProfile(readFileSync(join(f.out, 'master.json'), 'utf8'), 'MasterProfile').profile;
  }, 60_000);

  /** A fresh token and the ceremony's plan pointed at it. */
  function freshTarget(): { planPath: string; label: string; pin: string } {
    const label = `WFresh-${process.pid % 100000}-${++n}`;
    const pin = `wfpin-${n}-8812`;
    f.hsm.addToken(label, pin);
    const planObj = structuredClone(f.plan);
    planObj.Ceremony.Token = f.hsm.uri(label);
    const planPath = join(f.dir, `recover-plan-${n}.json`);
    writeFileSync(planPath, JSON.stringify(planObj, null, 2) + '\n');
    return { planPath, label, pin };
  }
  const share = (i: number): string => join(f.out, 'shares', `${i}.txt`);
  const K = (indices: number[]): Uint8Array => combineShares(indices.map((i) => parseShareFile(readFileSync(share(i), 'utf8')).share));

  it('runs: escrowed by wrapping, transcript without an import step, outputs verify with verifyCeremony', async () => {
    expect(summary.origin).toBe('generate-on-token-wrapped');
    expect(summary.escrow).toMatchObject({ threshold: 3, shares: 5, form: 'WrappedKeySet' });
    expect(summary.master.signatureKey).toBe(master.MasterSignatureKey.UDF);
    const lines = readFileSync(join(f.out, 'transcript.jsonl'), 'utf8').split('\n').filter((l) => l !== '');
    verifyLog(lines);
    const entries = lines.map((l) => JSON.parse(l) as { Type: string; Body: Record<string, unknown> });
    expect(entries.map((e) => e.Type)).toEqual(['plan', 'preflight', 'keys-intent', 'keys', 'escrow', 'profiles', 'verify', 'acknowledgement', 'complete']);
    const body = (t: string) => entries.find((e) => e.Type === t)?.Body ?? {};
    expect(JSON.stringify(body('preflight').Capabilities)).toContain('wrap P-256 private keys: CKM_AES_KEY_WRAP_PAD (probed with a session key)');
    expect(body('keys-intent')).toMatchObject({ KeyEncryptionKey: 'mesh-master-signature-escrow-kek', KeyEncryptionKeyToken: false });
    expect(body('escrow')).toMatchObject({ Form: 'WrappedKeySet', Wrapping: 'CKM_AES_KEY_WRAP_PAD', KeyEncryptionKey: { Token: false, Destroyed: true } });
    expect(body('verify')).toMatchObject({ Match: true, Method: 'shares + unwrap', TokenKeysExtractable: false });
    expect((body('verify').UnwrapTests as unknown[]).length).toBe(2);
    expect(lines.join('\n')).not.toMatch(/S-UDF|"d":|"Wrapped"/);
    const report = await verifyCeremony(f.out);
    expect(report.failure).toBeUndefined();
    expect(report.ok).toBe(true);
    expect(report.origin).toBe('generate-on-token-wrapped');
  });

  it('the token keys are sensitive and, after the verified escrow, non-extractable; no AES key is left', async () => {
    const store = await Pkcs11KeyStore.open(f.tokenUri, f.secrets.token);
    try {
      const keys = await store.list();
      expect(keys.map((k) => k.label).sort()).toEqual([...LABELS].sort());
      for (const k of keys) expect(k.extractable).toBe(false);
    } finally {
      await store.close();
    }
    const labels = tokenLabels(f, f.tokenLabel, f.pinEnv['MASTER_PIN'] as string);
    expect([...new Set(labels)].sort()).toEqual([...LABELS].sort());
  });

  it('the blob holds only wrapped keys (no "d"), and they are the Master Profile keys wrapped under the shares\' K', async () => {
    const blobText = readFileSync(join(f.out, 'escrow', `${summary.escrow?.blobId}.json`), 'utf8');
    const key = K([5, 1, 3]);
    expect(escrowBlobId(key)).toBe(summary.escrow?.blobId);
    const opened = openOfflineEscrowAny(blobText, key);
    expect(opened.Form).toBe('WrappedKeySet');
    if (opened.Form !== 'WrappedKeySet') return;
    for (const k of opened.KeySet.Keys) {
      expect(Object.keys(k).sort()).toEqual(['Curve', 'Label', 'PublicKey', 'Role', 'Wrapped', 'kid']);
      expect(Object.keys(k.PublicKey)).not.toContain('d');
    }
    expect(opened.KeySet.Keys.map((k) => k.kid)).toEqual([master.MasterSignatureKey.UDF, master.MasterEscrowKeys[0]?.UDF]);
    expect(opened.KeySet.Keys.map((k) => k.Label)).toEqual(LABELS);
    for (const k of opened.KeySet.Keys) {
      const d = createDecipheriv('id-aes256-wrap-pad', key, KWP_IV);
      const pkcs8 = Buffer.concat([d.update(fromB64u(k.Wrapped)), d.final()]);
      const pub = createPublicKey(createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' })).export({ format: 'jwk' });
      expect({ x: pub.x, y: pub.y }).toEqual({ x: k.PublicKey.x, y: k.PublicKey.y });
      pkcs8.fill(0);
    }
    key.fill(0);
  });

  it('recovers onto a fresh token from 3 of 5 shares in shuffled order: same UDFs, the keys sign and agree under the Master Profile keys', async () => {
    const t = freshTarget();
    const steps: string[] = [];
    const out = join(f.dir, `recovery-${++n}`);
    const r = await recoverCeremony({
      plan: parsePlan(readFileSync(t.planPath)),
      shares: [share(4), share(2), share(5)],
      escrowDir: join(f.out, 'escrow'),
      out,
      secrets: { token: utf8(t.pin) },
      onStep: (s) => steps.push(s.step),
    });
    expect(r.used).toEqual([2, 4, 5]);
    expect(r.keys.map((k) => k.keyId)).toEqual([master.MasterSignatureKey.UDF, master.MasterEscrowKeys[0]?.UDF]);
    expect(steps).toEqual(['master', 'share', 'share', 'share', 'recombine', 'decrypt', 'import', 'transcript']);
    const lines = readFileSync(join(out, 'recovery-transcript.jsonl'), 'utf8').split('\n').filter((l) => l !== '');
    const imp = lines.map((l) => JSON.parse(l) as { Type: string; Body: Record<string, unknown> }).find((e) => e.Type === 'import');
    expect(imp?.Body).toMatchObject({ Method: 'unwrap', Wrapping: 'CKM_AES_KEY_WRAP_PAD', Extractable: false, Sensitive: true });
    const store = await Pkcs11KeyStore.open(f.hsm.uri(t.label), utf8(t.pin));
    try {
      const keys = await store.list();
      expect(keys.map((k) => k.label).sort()).toEqual([...LABELS].sort());
      const sig = await store.get('mesh-master-signature');
      expect(sig.info.extractable).toBe(false);
      expect(sig.info.keyId).toBe(master.MasterSignatureKey.UDF);
      const msg = utf8('signed by the recovered wrapped master key');
      expect(verifiesUnder(master.MasterSignatureKey.PublicParameters as PublicJwk, msg, await sig.signer().sign(msg))).toBe(true);
      const esc = await store.get('mesh-master-escrow');
      expect(esc.info.keyId).toBe(master.MasterEscrowKeys[0]?.UDF);
      expect(esc.info.extractable).toBe(false);
      const app = testKey('X25519');
      const jwe = await escrowApplicationKey(app.privateJwk, [], master.MasterEscrowKeys[0]?.PublicParameters as never);
      expect((await recoverApplicationKey(jwe, esc.decrypter())).privateJwk?.d).toBe(app.privateJwk.d);
    } finally {
      await store.close();
    }
    // Only the two keys (private + public objects) are on the token: the AES session key is gone.
    expect([...new Set(tokenLabels(f, t.label, t.pin))].sort()).toEqual([...LABELS].sort());
  });

  it('k−1 shares fail, naming how many more are needed; nothing is created', async () => {
    const t = freshTarget();
    const e = await err(
      recoverCeremony({ plan: parsePlan(readFileSync(t.planPath)), shares: [share(3), share(1)], escrowDir: join(f.out, 'escrow'), out: join(f.dir, `recovery-${++n}`), secrets: { token: utf8(t.pin) } }),
    );
    expect(e.code).toBe(ErrorCode.SHARES_INSUFFICIENT);
    expect(e.message).toMatch(/need 1 more share/);
    expect(tokenLabels(f, t.label, t.pin)).toEqual([]);
  });

  it('a plan of the other origin is refused: the blob says it holds wrapped keys', async () => {
    const t = freshTarget();
    const planObj = JSON.parse(readFileSync(t.planPath, 'utf8')) as { Ceremony: Record<string, unknown> };
    planObj.Ceremony.KeyOrigin = 'import-with-escrow';
    const e = await err(
      recoverCeremony({ plan: parsePlan(utf8(JSON.stringify(planObj))), shares: [share(1), share(2), share(3)], escrowDir: join(f.out, 'escrow'), out: join(f.dir, `recovery-${++n}`), secrets: { token: utf8(t.pin) } }),
    );
    expect(e.code).toBe(ErrorCode.CEREMONY_VERIFY);
    expect(e.message).toMatch(/holds keys wrapped on a token.*KeyOrigin is import-with-escrow/);
    expect(tokenLabels(f, t.label, t.pin)).toEqual([]);
  });

  it('a wrapped plan given an import-with-escrow blob is refused: the blob holds private keys', async () => {
    const g = await fixture({ origin: 'import-with-escrow', algorithms: P256 });
    await runCeremony(planOf(g), { out: g.out, secrets: g.secrets });
    const t = freshTarget();
    const planObj = structuredClone(g.plan);
    Object.assign(planObj.Ceremony, { KeyOrigin: 'generate-on-token-wrapped', Token: f.hsm.uri(t.label) });
    const e = await err(
      recoverCeremony({
        plan: parsePlan(utf8(JSON.stringify(planObj))),
        shares: [1, 2, 3].map((i) => join(g.out, 'shares', `${i}.txt`)),
        escrowDir: join(g.out, 'escrow'),
        out: join(f.dir, `recovery-${++n}`),
        secrets: { token: utf8(t.pin) },
      }),
    );
    expect(e.code).toBe(ErrorCode.CEREMONY_VERIFY);
    expect(e.message).toMatch(/holds private keys \(an import-with-escrow escrow\).*KeyOrigin is generate-on-token-wrapped/);
    expect(tokenLabels(f, t.label, t.pin)).toEqual([]);
  });

  it('an Ed448 + X448 plan is refused at preflight naming the token, CKM_AES_KEY_WRAP_PAD and CKR_KEY_NOT_WRAPPABLE; nothing is left', async () => {
    const g = await fixture({ origin: 'generate-on-token-wrapped' });
    const e = await err(runCeremony(planOf(g), { out: g.out, secrets: g.secrets }));
    expect(e).toBeInstanceOf(UnsupportedError);
    expect(e.code).toBe(ErrorCode.NOT_SUPPORTED);
    expect(e.message).toContain(`token "${g.tokenLabel}" cannot wrap Ed448 private keys with CKM_AES_KEY_WRAP_PAD (CKR_KEY_NOT_WRAPPABLE)`);
    expect(existsSync(g.out)).toBe(false);
    expect(tokenLabels(g, g.tokenLabel, g.pinEnv['MASTER_PIN'] as string)).toEqual([]);
  });

  it('a P-256 signature with an X448 escrow key is refused too (the X448 key cannot be wrapped)', async () => {
    const g = await fixture({ origin: 'generate-on-token-wrapped', algorithms: { Signature: 'P-256', Escrow: 'X448' } });
    const e = await err(runCeremony(planOf(g), { out: g.out, secrets: g.secrets }));
    expect(e.code).toBe(ErrorCode.NOT_SUPPORTED);
    expect(e.message).toMatch(/cannot wrap X448 private keys with CKM_AES_KEY_WRAP_PAD \(CKR_KEY_NOT_WRAPPABLE\)/);
    expect(existsSync(g.out)).toBe(false);
  });
});

describe.skipIf(softhsmMissing !== undefined)('generate-on-token-wrapped crash safety (built CLI, SoftHSM)', () => {
  beforeAll(() => {
    if (!existsSync('dist/cli/commands/ceremony.js')) throw new Error('dist/ missing or stale: run "npm run build" before these tests');
  });

  const run = (f: CeremonyFixture, env: Record<string, string> = {}) => meshkitCeremony(['run', '--plan', f.planPath, '--out', f.out, '--yes', ...f.pinArgs], f, env);
  const labelsOn = (f: CeremonyFixture): string[] => [...new Set(tokenLabels(f, f.tokenLabel, f.pinEnv['MASTER_PIN'] as string))];
  function transcriptTypes(f: CeremonyFixture): string[] {
    for (const p of [join(f.out, '.staging', 'transcript.jsonl'), join(f.out, 'transcript.jsonl')]) {
      if (existsSync(p)) {
        const lines = readFileSync(p, 'utf8').split('\n').filter((l) => l !== '');
        verifyLog(lines);
        return lines.map((l) => (JSON.parse(l) as { Type: string }).Type);
      }
    }
    return [];
  }

  // Every fault point this origin passes ('import' is import-with-escrow only).
  const points = CEREMONY_FAULT_POINTS.filter((p) => p !== 'import' && p !== 'plan' && p !== 'preflight');
  it.each([...points])('killed after %s: refused with instructions, abort cleans up, a fresh run succeeds', async (point) => {
    const f = await fixture({ origin: 'generate-on-token-wrapped', algorithms: P256 });
    const r = run(f, { MESHKIT_TEST: '1', MESHKIT_CEREMONY_FAULT_AFTER: point });
    expect(r.signal, r.stderr).toBe('SIGKILL');
    const last = { 'keys-first-object': 'keys-intent', 'publish-partial': 'complete' }[point as string] ?? point;
    const types = transcriptTypes(f);
    expect(types.at(-1)).toBe(last);
    const labels = labelsOn(f);
    // Only the announced keys are on the token — never the AES session key (a session object dies with the process).
    expect(labels.every((l) => LABELS.includes(l)), labels.join(', ')).toBe(true);
    if (labels.length > 0) expect(types).toContain('keys-intent');
    if (point === 'keys-first-object') expect(labels).toEqual(['mesh-master-signature']);
    // DIR (outside .staging) never holds a blob without verified shares, or shares without a blob.
    const blob = existsSync(join(f.out, 'escrow'));
    expect(blob).toBe(existsSync(join(f.out, 'shares')));
    if (blob) expect(types).toContain('verify');
    expect(readdirSync(f.out)).toContain('.staging');
    const again = run(f);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('meshkit ceremony abort --plan PLAN --out');
    const abort = meshkitCeremony(['abort', '--plan', f.planPath, '--out', f.out, '--pin-env', 'MASTER_PIN', '--json'], f);
    expect(abort.code, abort.stderr).toBe(0);
    const deleted = (JSON.parse(abort.stdout) as { deletedKeys: Array<{ label: string }> }).deletedKeys.map((k) => k.label).sort();
    expect(deleted).toEqual([...labels].sort());
    expect(existsSync(f.out) ? readdirSync(f.out) : []).toEqual([]);
    expect(labelsOn(f)).toEqual([]);
    const fresh = run(f);
    expect(fresh.code, fresh.stderr).toBe(0);
    expect((await verifyCeremony(f.out)).ok).toBe(true);
  }, 90_000);
});
