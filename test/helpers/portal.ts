/**
 * TEST helper: start a Mesh portal on loopback with a temporary SQLite file, in-process
 * ({@link startTestPortal}) or as a child process running the built CLI ({@link startChildPortal},
 * `node bin/meshkit.js portal serve --plain-http --listen 127.0.0.1:0 …`, needs `npm run build`); post raw
 * requests ({@link post}); and build accounts, devices and signed requests ({@link makeAccount}).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { b64u, utf8 } from '../../src/core/bytes.js';
import { signJws, type JwsGeneral } from '../../src/core/jose.js';
import {
  ProfileType,
  composeDeviceProfile,
  composeMasterProfile,
  composePersonalProfile,
  connectDevice,
  signProfile,
  supersede,
  type MasterProfile,
  type PersonalProfile,
  type SignedProfile,
} from '../../src/core/profiles.js';
import type { Signer } from '../../src/core/signer.js';
import { udfNonce } from '../../src/core/udf.js';
import { openStorage, type PortalStorage } from '../../src/portal/storage.js';
import { startPortalServer, type PortalServer, type PortalServerOptions } from '../../src/portal/server.js';
import { testKey, testSigner, type TestKey } from './software-signer.js';

export const BIN = resolve('bin/meshkit.js');
export const PORTAL_PASSPHRASE = 'portal-test-passphrase-9f3k';

/** A fresh RequestId. */
export function rid(): string {
  return udfNonce();
}

/** An in-process portal on a temporary SQLite file. */
export interface TestPortal {
  url: string;
  /** The transaction endpoint, `${url}/.well-known/mmm/`. */
  endpoint: string;
  server: PortalServer;
  storage: PortalStorage;
  portalKey: TestKey;
  portalSigner: Signer;
  dir: string;
  dbFile: string;
  /** Graceful close (also closes storage) and removes the directory (unless `keepDir`). */
  close(opts?: { keepDir?: boolean }): Promise<void>;
}

/**
 * Starts an in-process portal (plain HTTP on 127.0.0.1, any free port) on a temporary SQLite file.
 * `opts` are passed to startPortalServer (storage and key are made here unless given).
 */
export async function startTestPortal(opts: Partial<PortalServerOptions> & { dir?: string; dbFile?: string } = {}): Promise<TestPortal> {
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'meshkit-portal-'));
  const dbFile = opts.dbFile ?? join(dir, 'portal.db');
  const storage = opts.storage ?? (await openStorage(`sqlite:${dbFile}`));
  const portalKey = testKey('Ed25519');
  const portalSigner = opts.portalKey ?? testSigner(portalKey);
  const { dir: _d, dbFile: _f, ...serverOpts } = opts;
  const server = await startPortalServer({
    host: '127.0.0.1', port: 0, plainHttp: true, headSeconds: 0, onError: () => undefined,
    ...serverOpts, storage, portalKey: portalSigner,
  });
  return {
    url: server.url, endpoint: `${server.url}/.well-known/mmm/`, server, storage, portalKey, portalSigner, dir, dbFile,
    close: async (o = {}) => {
      await server.close();
      if (o.keepDir !== true && opts.dir === undefined) rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A portal running as a child process (`node bin/meshkit.js portal serve …`). */
export interface ChildPortal {
  url: string;
  endpoint: string;
  child: ChildProcess;
  dir: string;
  dbFile: string;
  /** `file:DIR/portal-key.json#portal`. */
  portalKeyUri: string;
  /** Everything the child wrote so far. */
  stdout(): string;
  stderr(): string;
  /** SIGTERM and wait for the exit code. */
  stop(): Promise<number | null>;
  /** SIGKILL and wait. */
  kill9(): Promise<void>;
}

/** Env without MESHKIT_* (the child gets only what the test gives). */
function cleanEnv(extra: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('MESHKIT_')) env[k] = v;
  return { ...env, ...extra };
}

/** Runs the built CLI to completion (for `portal log export|verify`). */
export function runMeshkit(args: string[], opts: { cwd?: string; env?: Record<string, string> } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolveRun, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: opts.cwd ?? process.cwd(), env: cleanEnv(opts.env ?? {}), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString('utf8')));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
    child.on('error', reject);
    child.on('close', (code) => resolveRun({ code, stdout, stderr }));
  });
}

/** Throws unless dist/ has the portal command. */
export function requireBuild(): void {
  if (!existsSync(resolve('dist/cli/commands/portal.js'))) throw new Error('dist/ missing or stale: run "npm run build" before these tests');
}

/**
 * Starts `meshkit portal serve --plain-http --listen 127.0.0.1:0` on `DIR/portal.db` with the portal key in
 * `DIR/portal-key.json` (passphrase {@link PORTAL_PASSPHRASE} via MESHKIT_PASSPHRASE, scrypt cost 14) and
 * waits for its `listening on URL` line.
 */
export async function startChildPortal(opts: { dir?: string; args?: string[]; env?: Record<string, string>; timeoutMs?: number } = {}): Promise<ChildPortal> {
  requireBuild();
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'meshkit-portal-child-'));
  const dbFile = join(dir, 'portal.db');
  const portalKeyUri = `file:${join(dir, 'portal-key.json')}#portal`;
  const args = ['portal', 'serve', '--plain-http', '--listen', '127.0.0.1:0', '--db', `sqlite:${dbFile}`,
    '--portal-key', portalKeyUri, '--kdf-cost', '14', ...(opts.args ?? [])];
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: dir, env: cleanEnv({ MESHKIT_PASSPHRASE: PORTAL_PASSPHRASE, ...opts.env }), stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  const url = await new Promise<string>((resolveUrl, reject) => {
    const timer = setTimeout(() => reject(new Error(`portal did not start in time; stderr: ${stderr}`)), opts.timeoutMs ?? 20_000);
    child.stdout?.on('data', (d: Buffer) => {
      stdout += d.toString('utf8');
      const m = /listening on (\S+)/.exec(stdout);
      if (m?.[1] !== undefined) {
        clearTimeout(timer);
        resolveUrl(m[1]);
      }
    });
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`portal exited with ${String(code)} before listening; stderr: ${stderr}`));
    });
  });
  return {
    url, endpoint: `${url}/.well-known/mmm/`, child, dir, dbFile, portalKeyUri,
    stdout: () => stdout, stderr: () => stderr,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      return exited;
    },
    kill9: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}

/** Posts `{"<name>Request": request}` (or a raw body) and returns the HTTP status and parsed body. */
export async function post(
  endpoint: string,
  name: string,
  request: unknown,
  opts: { raw?: string | Uint8Array; contentType?: string } = {},
): Promise<{ status: number; body: Record<string, unknown>; response: Record<string, unknown> }> {
  const body = opts.raw ?? JSON.stringify({ [`${name}Request`]: request });
  const res = await fetch(endpoint, { method: 'POST', headers: { 'Content-Type': opts.contentType ?? 'application/json' }, body });
  const text = await res.text();
  const parsed = JSON.parse(text) as Record<string, unknown>;
  const response = (parsed[`${name}Response`] ?? parsed.Error ?? {}) as Record<string, unknown>;
  return { status: res.status, body: parsed, response };
}

/** A test account: master and admin keys, the signed Master and Personal Profiles, and builders. */
export interface TestAccount {
  name: string;
  masterKey: TestKey;
  masterSigner: Signer;
  adminKey: TestKey;
  adminSigner: Signer;
  master: MasterProfile;
  signedMaster: SignedProfile;
  personal: PersonalProfile;
  signedPersonal: SignedProfile;
  /** The next version of the Personal Profile (Sequence + 1 from the latest made here), signed by `signer` (default admin). */
  nextPersonal(signer?: Signer, changes?: Partial<PersonalProfile>): Promise<SignedProfile>;
  /** A Personal Profile with the given Sequence (not remembered). */
  personalWithSequence(sequence: number, signer?: Signer): Promise<SignedProfile>;
  /** The CreateAccount request members. */
  createRequest(): Record<string, unknown>;
}

/** Makes an account (Ed25519 master and admin keys; fast). */
export async function makeAccount(name = `alice-${udfNonce(64).slice(0, 8).toLowerCase().replace(/-/g, '')}@example.com`): Promise<TestAccount> {
  const masterKey = testKey('Ed25519');
  const adminKey = testKey('Ed25519');
  const masterSigner = testSigner(masterKey);
  const adminSigner = testSigner(adminKey);
  const master = composeMasterProfile({ signatureKey: masterKey.publicJwk, adminKeys: [adminKey.publicJwk] });
  const signedMaster = await signProfile(ProfileType.Master, master, masterSigner);
  const personal = composePersonalProfile({ master: signedMaster });
  const signedPersonal = await signProfile(ProfileType.Personal, personal, adminSigner);
  const account: TestAccount = {
    name, masterKey, masterSigner, adminKey, adminSigner, master, signedMaster, personal, signedPersonal,
    nextPersonal: async (signer = adminSigner, changes = {}) => {
      account.personal = supersede(account.personal, changes);
      return signProfile(ProfileType.Personal, account.personal, signer);
    },
    personalWithSequence: async (sequence, signer = adminSigner) =>
      signProfile(ProfileType.Personal, { ...account.personal, Sequence: sequence, Updated: new Date().toISOString() }, signer),
    createRequest: () => ({ RequestId: rid(), Account: name, Profile: signedPersonal }),
  };
  return account;
}

/** A device: its key and its self-signed Device Profile. */
export interface TestDevice {
  key: TestKey;
  signer: Signer;
  signed: SignedProfile;
  identifier: string;
}

/** Makes a device with an Ed25519 signature key. */
export async function makeDevice(description = 'test device'): Promise<TestDevice> {
  const key = testKey('Ed25519');
  const signer = testSigner(key);
  const profile = composeDeviceProfile({ description, signatureKey: key.publicJwk });
  return { key, signer, signed: await signProfile(ProfileType.Device, profile, signer), identifier: profile.Identifier };
}

/** The device-signed ConnectionRequest JWS (and its client nonce). */
export async function connectionRequest(
  account: TestAccount,
  device: TestDevice,
  opts: { signer?: Signer; parent?: string; accountName?: string } = {},
): Promise<{ signedRequest: JwsGeneral; clientNonce: Uint8Array }> {
  const clientNonce = new Uint8Array(16).map(() => Math.floor(Math.random() * 256));
  const payload = {
    ConnectionRequest: {
      Account: opts.accountName ?? account.name,
      ParentUDF: opts.parent ?? account.master.Identifier,
      Device: device.signed,
      ClientNonce: b64u(clientNonce),
    },
  };
  return { signedRequest: await signJws(utf8(JSON.stringify(payload)), [opts.signer ?? device.signer]), clientNonce };
}

/** An admin-signed `{"PendingQuery": {Account, Time}}`. */
export async function pendingQuery(account: TestAccount, signer: Signer = account.adminSigner, time: Date = new Date()): Promise<JwsGeneral> {
  return signJws(utf8(JSON.stringify({ PendingQuery: { Account: account.name, Time: time.toISOString() } })), [signer]);
}

/** An admin-signed `{"ConnectionResult": {RequestUDF, Result, Witness}}`. */
export async function connectionResult(
  requestUdf: string,
  result: 'Accepted' | 'Refused',
  witness: string,
  signer: Signer,
): Promise<JwsGeneral> {
  return signJws(utf8(JSON.stringify({ ConnectionResult: { RequestUDF: requestUdf, Result: result, Witness: witness } })), [signer]);
}

/** Connects `device` in the account's Personal Profile (next Sequence), signed by the admin key. */
export async function personalWithDevice(account: TestAccount, device: TestDevice): Promise<SignedProfile> {
  const next = connectDevice(account.personal, device.signed);
  account.personal = next;
  return signProfile(ProfileType.Personal, next, account.adminSigner);
}
