/**
 * The interfaces through which the pure core reaches keys it does not hold.
 *
 * A Signer or Decrypter may live in software, on an HSM or smartcard (PKCS#11), or on a device.
 * The core builds the bytes to be signed and checks the results; it never sees a private key.
 */

/** The curves meshkit speaks. P-256 only where a token cannot do EdDSA. */
export type Curve = 'Ed25519' | 'Ed448' | 'X25519' | 'X448' | 'P-256';
export const CURVES: readonly Curve[] = ['Ed25519', 'Ed448', 'X25519', 'X448', 'P-256'];

/** JWS algorithms: EdDSA (RFC 8037, Ed25519 and Ed448) and ES256 (P-256, raw r‖s signatures). */
export type SignatureAlgorithm = 'EdDSA' | 'ES256';

/** A public JWK as RFC 7517 / RFC 8037 define it (no private members). */
export interface PublicJwk {
  kty: 'OKP' | 'EC';
  crv: Curve;
  x: string;
  y?: string;
  kid?: string;
  use?: 'sig' | 'enc';
}

/** A private JWK (RFC 7517 / RFC 8037): the public members plus `d`. Handle with care; never log it. */
export interface PrivateJwk extends PublicJwk {
  d: string;
}

/** Something that signs: `sign` returns the JWS signature bytes (EdDSA: 64/114 bytes; ES256: raw r‖s, 64 bytes). */
export interface Signer {
  readonly keyId: string;
  readonly algorithm: SignatureAlgorithm;
  readonly publicJwk: PublicJwk;
  sign(data: Uint8Array): Promise<Uint8Array>;
}

/**
 * Something that does key agreement with a private key it holds (X25519, X448 or P-256 ECDH).
 * `deriveSharedSecret` returns the raw shared secret Z (RFC 7748 / SEC1 x-coordinate).
 */
export interface Decrypter {
  readonly keyId: string;
  readonly publicJwk: PublicJwk;
  deriveSharedSecret(peer: PublicJwk): Promise<Uint8Array>;
}
