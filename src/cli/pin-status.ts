/**
 * What a PIN prompt for a PKCS#11 key shows above the question: what the token reports about the
 * PIN (a failed attempt since the last success, the final try, locked). Read with C_GetTokenInfo,
 * which needs no login, right before the prompt; a failure to read it never blocks the prompt.
 */
import type { SecretRequest } from './secrets.js';

const SOFTHSM_DEFAULT = '/usr/lib/softhsm/libsofthsm2.so';

/**
 * The prompt request for a key reference: for a `pkcs11:` URI, purpose PIN with a status line read
 * from the token; otherwise a passphrase request.
 */
export function secretRequestFor(uri: string, subject: string, modulePath?: string): SecretRequest {
  if (!uri.startsWith('pkcs11:')) return { subject };
  return { purpose: 'PIN', subject, status: () => tokenPinStatus(uri, modulePath) };
}

/** pinStatusText of the token a `pkcs11:` URI names, or undefined when it cannot be read. */
export async function tokenPinStatus(uri: string, modulePath?: string): Promise<string | undefined> {
  // Loaded on demand: only PKCS#11 prompts load the native binding.
  const [{ parsePkcs11Uri }, { Pkcs11Module }, { pinStatusText }] = await Promise.all([
    import('../keystore/pkcs11/uri.js'),
    import('../keystore/pkcs11/module.js'),
    import('../keystore/pkcs11/session.js'),
  ]);
  const { uri: parsed } = parsePkcs11Uri(uri);
  const path = parsed.modulePath ?? modulePath ?? process.env['MESHKIT_PKCS11_MODULE'] ?? SOFTHSM_DEFAULT;
  const module = await Pkcs11Module.open(path);
  try {
    const slot = await module.findToken(parsed);
    return `${slot.token?.label ?? 'token'}: ${pinStatusText(slot.token?.pinStatus)}`;
  } finally {
    await module.close();
  }
}
