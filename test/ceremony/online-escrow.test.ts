/**
 * Online escrow (src/ceremony/online-escrow.ts and `meshkit escrow seal|open`): an application's
 * X25519 private key is escrowed to the master escrow key (X448 on a scratch SoftHSM token) and
 * recovered with the token's Decrypter (CKM_ECDH1_DERIVE); the normal recipient can decrypt too;
 * a non-recipient cannot.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCode, isMeshkitError } from '../../src/core/errors.js';
import { composeMasterProfile, signProfile } from '../../src/core/profiles.js';
import { fromUtf8, utf8 } from '../../src/core/bytes.js';
import { ESCROWED_JWK_CTY, escrowApplicationKey, masterEscrowKeyOf, recoverApplicationKey } from '../../src/ceremony/online-escrow.js';
import { Pkcs11KeyStore } from '../../src/keystore/pkcs11/index.js';
import type { KeyHandle } from '../../src/keystore/index.js';
import { createSoftHsm, softhsmMissing, type SoftHsmFixture } from '../helpers/softhsm.js';
import { testDecrypter, testKey, testSigner } from '../helpers/software-signer.js';
import { runMeshkit } from '../helpers/cli.js';

const PIN = '5172';
const hsm: SoftHsmFixture | undefined = softhsmMissing === undefined ? createSoftHsm([{ label: 'EscrowMaster', userPin: PIN }]) : undefined;
const work = mkdtempSync(join(tmpdir(), 'meshkit-online-escrow-'));
afterAll(() => {
  hsm?.cleanup();
  rmSync(work, { recursive: true, force: true });
});

/** Runs the CLI in-process, capturing stdout / stderr. */
const cli = runMeshkit;

describe.skipIf(hsm === undefined)('online escrow to the master escrow key on SoftHSM', () => {
  let store: Pkcs11KeyStore;
  let escrowHandle: KeyHandle;
  let masterFile: string;
  const appKey = testKey('X25519');
  const deviceKey = testKey('X25519');
  const stranger = testKey('X25519');

  beforeAll(async () => {
    if (hsm === undefined) return;
    store = await Pkcs11KeyStore.open(hsm.uri('EscrowMaster'), utf8(PIN));
    escrowHandle = await store.generate('mesh-master-escrow', 'X448');
    const sign = testKey('Ed448');
    const admin = testKey('Ed25519');
    const master = composeMasterProfile({ signatureKey: sign.publicJwk, escrowKeys: [escrowHandle.info.publicJwk], adminKeys: [admin.publicJwk] });
    const signed = await signProfile('MasterProfile', master, testSigner(sign));
    masterFile = join(work, 'master.json');
    writeFileSync(masterFile, JSON.stringify(signed));
  });
  afterAll(async () => {
    await store?.close();
  });

  it('masterEscrowKeyOf reads the verified Master Profile\'s X448 escrow key', async () => {
    const k = await masterEscrowKeyOf(readFileSync(masterFile, 'utf8'));
    expect(k.keyId).toBe(escrowHandle.info.keyId);
    expect(k.publicJwk.crv).toBe('X448');
  });

  it('masterEscrowKeyOf refuses an altered Master Profile', async () => {
    const signed = JSON.parse(readFileSync(masterFile, 'utf8')) as { payload: string };
    const payload = JSON.parse(Buffer.from(signed.payload, 'base64url').toString('utf8')) as { MasterProfile: { Names: string[] } };
    payload.MasterProfile.Names = ['mallory@example.com'];
    signed.payload = Buffer.from(JSON.stringify(payload)).toString('base64url');
    await expect(masterEscrowKeyOf(JSON.stringify(signed))).rejects.toMatchObject({ code: ErrorCode.PROFILE_SIGNATURE });
  });

  it('an application X25519 private key escrowed to the token\'s X448 key is recovered with the token Decrypter', async () => {
    const jwe = await escrowApplicationKey(appKey.privateJwk, [deviceKey.publicJwk], escrowHandle.info.publicJwk);
    expect(jwe.recipients.map((r) => r.header.kid)).toEqual([deviceKey.keyId, escrowHandle.info.keyId]);
    const got = await recoverApplicationKey(JSON.parse(JSON.stringify(jwe)), escrowHandle.decrypter());
    expect(got.protectedHeader.cty).toBe(ESCROWED_JWK_CTY);
    expect(got.decryptedBy).toBe(escrowHandle.info.keyId);
    expect(got.privateJwk).toEqual({ ...appKey.privateJwk, kid: appKey.keyId });
  });

  it('the normal recipient decrypts too; a non-recipient cannot', async () => {
    const jwe = await escrowApplicationKey(appKey.privateJwk, [deviceKey.publicJwk], escrowHandle.info.publicJwk);
    const got = await recoverApplicationKey(jwe, testDecrypter(deviceKey));
    expect(got.privateJwk?.d).toBe(appKey.privateJwk.d);
    const err = await recoverApplicationKey(jwe, testDecrypter(stranger)).catch((e: unknown) => e);
    expect(isMeshkitError(err, ErrorCode.JWE_NO_RECIPIENT)).toBe(true);
    // A stranger who claims the escrow key's kid still cannot decrypt.
    const impostor = testDecrypter(testKey('X448'), { keyId: escrowHandle.info.keyId });
    await expect(recoverApplicationKey(jwe, impostor)).rejects.toMatchObject({ code: ErrorCode.JWE_DECRYPTION });
  });

  it('plain bytes are escrowed with their cty; the escrow key is not listed twice', async () => {
    const jwe = await escrowApplicationKey(utf8('shared secret'), [escrowHandle.info.publicJwk], escrowHandle.info.publicJwk, { cty: 'text/plain' });
    expect(jwe.recipients).toHaveLength(1);
    const got = await recoverApplicationKey(jwe, escrowHandle.decrypter());
    expect(fromUtf8(got.plaintext)).toBe('shared secret');
    expect(got.privateJwk).toBeUndefined();
  });

  it('refuses a signature key as recipient and bad arguments', async () => {
    await expect(escrowApplicationKey(appKey.privateJwk, [testKey('Ed25519').publicJwk], escrowHandle.info.publicJwk)).rejects.toMatchObject({
      code: ErrorCode.KEY_INVALID,
    });
    await expect(escrowApplicationKey(appKey.privateJwk, 'x' as never, escrowHandle.info.publicJwk)).rejects.toThrow(TypeError);
    await expect(escrowApplicationKey({ kty: 'OKP' } as never, [], escrowHandle.info.publicJwk)).rejects.toThrow(TypeError);
  });

  it('meshkit escrow seal --master --to, then open --key pkcs11:… with the PIN from --pin-env', async () => {
    const keyFile = join(work, 'app.jwk');
    const toFile = join(work, 'device.jwk');
    writeFileSync(keyFile, JSON.stringify(appKey.privateJwk));
    writeFileSync(toFile, JSON.stringify(deviceKey.publicJwk));
    const jweFile = join(work, 'app.jwe');
    const sealed = await cli(['escrow', 'seal', '--master', masterFile, '--to', toFile, '--in', keyFile, '--out', jweFile, '--json']);
    expect(sealed.stderr).toBe('');
    expect(sealed.code).toBe(0);
    const summary = JSON.parse(sealed.stdout) as { masterEscrowKey: string; recipients: string[]; content: string };
    expect(summary).toMatchObject({ masterEscrowKey: escrowHandle.info.keyId, recipients: [deviceKey.keyId], content: 'private JWK' });

    if (hsm === undefined) return;
    const uri = `pkcs11:token=EscrowMaster;object=mesh-master-escrow?module-path=${hsm.modulePath}`;
    // The test process already holds a session on the token; the CLI opens its own in-process.
    const opened = await cli(['escrow', 'open', '--key', uri, '--pin-env', 'ESCROW_PIN', '--json', jweFile], { ESCROW_PIN: PIN });
    expect(opened.stderr).toBe('');
    expect(opened.code).toBe(0);
    const body = JSON.parse(opened.stdout) as { decryptedBy: string; privateJwk: { d: string } };
    expect(body.decryptedBy).toBe(escrowHandle.info.keyId);
    expect(body.privateJwk.d).toBe(appKey.privateJwk.d);

  });
});
