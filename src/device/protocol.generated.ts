/* generated — do not edit; source firmware-bindings/protocol/protocol.json, regenerate with npm run protocol:gen */
/**
 * The meshkit device protocol as constants: limits, message types, field keys, device states,
 * capability and key bits, status codes. Framing and encoding: docs/protocol.md.
 */

/** Version of protocol.json (also the frame version byte). */
export const PROTOCOL_DEFINITION_VERSION = 1;

/** Protocol limits and sizes. */
export const Limits = {
  /** frame version byte and HELLO.version */
  PROTOCOL_VERSION: 1,
  /** largest payload of one serial frame */
  MAX_FRAME_PAYLOAD: 512,
  /** largest CBOR message (after reassembly) */
  MAX_MESSAGE: 4096,
  /** most serial frames one message is split into */
  MAX_FRAGMENTS: 8,
  /** decoded frame bytes besides the payload: 6 header + 4 CRC */
  FRAME_OVERHEAD: 10,
  /** largest COBS-encoded frame without its 0x00 delimiter: 512 + 10 + 3 */
  MAX_ENCODED_FRAME: 525,
  /** HID report size in bytes */
  HID_REPORT_SIZE: 64,
  /** message bytes in a HID init packet */
  HID_INIT_DATA: 57,
  /** message bytes in a HID continuation packet */
  HID_CONT_DATA: 59,
  /** deepest nesting of arrays and maps */
  CBOR_MAX_DEPTH: 8,
  /** largest application configuration (plaintext bytes) INSTALL carries */
  MAX_CONFIG: 1024,
} as const;

/** Message type codes (frame type byte; HID CMD = 0x80 | type). */
export const MessageType = {
  /** opens a session; any state */
  HELLO: 0x01,
  /** who the device is and where it stands */
  INFO: 0x02,
  /** the bench proves its key to a device that pins a provisioner key */
  BENCH_AUTH: 0x03,
  /** the bench is trusted for this session */
  BENCH_AUTH_OK: 0x04,
  /** make the device keys on the device (FACTORY); in a later state returns the same base keys */
  KEYGEN: 0x05,
  /** the device public keys and its self-signed Device Profile */
  PUBKEYS: 0x06,
  /** the bench contribution, sealed to the device's base encryption key (docs/enrollment.md) */
  COGEN: 0x07,
  /** composite public keys and proof of possession */
  PROOF: 0x08,
  /** connection and application configuration */
  INSTALL: 0x09,
  /** INSTALL stored, or RESET done */
  ACK: 0x0A,
  /** close provisioning over the record */
  COMMIT: 0x0B,
  /** the device's signature over the record */
  RECEIPT: 0x0C,
  /** wipe the keys of a device that is not COMMITTED, back to FACTORY (restart after an interrupted enrollment) */
  RESET: 0x0D,
  /** reply to any request that failed */
  ERROR: 0x7F,
} as const;
export type MessageTypeName = keyof typeof MessageType;
export type MessageTypeCode = (typeof MessageType)[MessageTypeName];

/** Message name by type code. */
export const MessageTypeNames: Readonly<Record<MessageTypeCode, MessageTypeName>> = {
  0x01: 'HELLO',
  0x02: 'INFO',
  0x03: 'BENCH_AUTH',
  0x04: 'BENCH_AUTH_OK',
  0x05: 'KEYGEN',
  0x06: 'PUBKEYS',
  0x07: 'COGEN',
  0x08: 'PROOF',
  0x09: 'INSTALL',
  0x0A: 'ACK',
  0x0B: 'COMMIT',
  0x0C: 'RECEIPT',
  0x0D: 'RESET',
  0x7F: 'ERROR',
};

/** The reply each request expects (ERROR may answer any of them). */
export const Replies = {
  HELLO: 'INFO',
  BENCH_AUTH: 'BENCH_AUTH_OK',
  KEYGEN: 'PUBKEYS',
  COGEN: 'PROOF',
  INSTALL: 'ACK',
  COMMIT: 'RECEIPT',
  RESET: 'ACK',
} as const satisfies Partial<Record<MessageTypeName, MessageTypeName>>;

/** Device states (INFO.state). */
export const DeviceState = {
  /** fresh from the factory: no keys, no record */
  FACTORY: 0,
  /** a trusted bench proved its key (BENCH_AUTH) in this session */
  AUTHENTICATED: 1,
  /** device keys made on the device (KEYGEN) */
  KEYS_GENERATED: 2,
  /** bench contribution applied, composite keys proven (COGEN) */
  COGENERATED: 3,
  /** connection and configuration stored (INSTALL) */
  INSTALLED: 4,
  /** record digest signed (COMMIT); provisioning complete */
  COMMITTED: 5,
} as const;
export type DeviceStateName = keyof typeof DeviceState;
export type DeviceStateValue = (typeof DeviceState)[DeviceStateName];

/** For each request: the persistent states that accept it (any other → BAD_STATE), whether BENCH_AUTH must come first
 * (else NOT_AUTHENTICATED), and what it does (docs/enrollment.md). */
export const RequestRules = {
  HELLO: { auth: false, states: ['FACTORY', 'KEYS_GENERATED', 'COGENERATED', 'INSTALLED', 'COMMITTED'], effect: "opens a session in any state" },
  BENCH_AUTH: { auth: false, states: ['FACTORY', 'KEYS_GENERATED', 'COGENERATED', 'INSTALLED', 'COMMITTED'], effect: "after HELLO, in any state" },
  KEYGEN: { auth: true, states: ['FACTORY', 'KEYS_GENERATED', 'COGENERATED', 'INSTALLED', 'COMMITTED'], effect: "FACTORY: generate, → KEYS_GENERATED; later: the same base keys again" },
  COGEN: { auth: true, states: ['KEYS_GENERATED', 'COGENERATED', 'INSTALLED', 'COMMITTED'], effect: "KEYS_GENERATED: → COGENERATED; later: only the same contribution box again" },
  INSTALL: { auth: true, states: ['COGENERATED', 'INSTALLED', 'COMMITTED'], effect: "COGENERATED: → INSTALLED; later: only the same bytes again" },
  COMMIT: { auth: true, states: ['INSTALLED', 'COMMITTED'], effect: "INSTALLED: → COMMITTED; later: only the same record digest again" },
  RESET: { auth: true, states: ['FACTORY', 'KEYS_GENERATED', 'COGENERATED', 'INSTALLED'], effect: "→ FACTORY, every key and digest wiped; never once COMMITTED" },
} as const satisfies Partial<Record<MessageTypeName, { auth: boolean; states: readonly DeviceStateName[]; effect: string }>>;

/** Status codes shared with the C firmware (ERROR.code, DeviceError.status), in numeric bands. */
export const DeviceStatus = {
  /** ok: success */
  OK: 0,
  /** framing: frame CRC-32C does not match */
  BAD_CRC: 1,
  /** framing: frame version is not PROTOCOL_VERSION */
  BAD_VERSION: 2,
  /** framing: frame or report size disagrees with its length field, or malformed COBS */
  BAD_LENGTH: 3,
  /** framing: fragment or continuation out of order, or type/seq changed mid-message */
  FRAGMENT_ORDER: 4,
  /** framing: frame, fragment count or message larger than allowed */
  TOO_LARGE: 5,
  /** framing: HID report on an unexpected channel id */
  BAD_CHANNEL: 6,
  /** encoding: not well-formed or outside the CBOR subset */
  CBOR_INVALID: 32,
  /** encoding: non-shortest integer or length, or map keys not strictly increasing */
  CBOR_NONCANONICAL: 33,
  /** encoding: a required message field is absent */
  MISSING_FIELD: 34,
  /** encoding: a message field has the wrong CBOR type, or the message is not a map */
  WRONG_TYPE: 35,
  /** protocol: the request is not allowed in the device's state */
  BAD_STATE: 64,
  /** protocol: unknown message type */
  UNKNOWN_MESSAGE: 65,
  /** protocol: the request needs BENCH_AUTH first */
  NOT_AUTHENTICATED: 66,
  /** crypto: a signature does not verify or the signer is not trusted */
  BAD_SIGNATURE: 96,
  /** crypto: composite keys do not agree */
  COGEN_MISMATCH: 97,
  /** crypto: an encrypted field cannot be decrypted */
  DECRYPT_FAILED: 98,
  /** crypto: a signed object names another device */
  WRONG_DEVICE: 99,
  /** platform: flash read or write failed */
  FLASH: 128,
  /** platform: random number generator failed */
  RNG: 129,
} as const;
export type DeviceStatusName = keyof typeof DeviceStatus;
export type DeviceStatusValue = (typeof DeviceStatus)[DeviceStatusName];

/** Status name by value. */
export const DeviceStatusNames: Readonly<Record<DeviceStatusValue, DeviceStatusName>> = {
  0: 'OK',
  1: 'BAD_CRC',
  2: 'BAD_VERSION',
  3: 'BAD_LENGTH',
  4: 'FRAGMENT_ORDER',
  5: 'TOO_LARGE',
  6: 'BAD_CHANNEL',
  32: 'CBOR_INVALID',
  33: 'CBOR_NONCANONICAL',
  34: 'MISSING_FIELD',
  35: 'WRONG_TYPE',
  64: 'BAD_STATE',
  65: 'UNKNOWN_MESSAGE',
  66: 'NOT_AUTHENTICATED',
  96: 'BAD_SIGNATURE',
  97: 'COGEN_MISMATCH',
  98: 'DECRYPT_FAILED',
  99: 'WRONG_DEVICE',
  128: 'FLASH',
  129: 'RNG',
};

/** Status code bands (inclusive). */
export const StatusBands = {
  framing: { min: 1, max: 31 },
  encoding: { min: 32, max: 63 },
  protocol: { min: 64, max: 95 },
  crypto: { min: 96, max: 127 },
  platform: { min: 128, max: 255 },
} as const;

/** INFO.capabilities bit values. */
export const Capability = {
  /** Ed25519 signature keys */
  ED25519: 1,
  /** Ed448 signature keys */
  ED448: 2,
  /** X25519 encryption keys */
  X25519: 4,
  /** X448 encryption keys */
  X448: 8,
  /** key co-generation */
  COGEN: 16,
  /** serial (COBS) framing */
  SERIAL: 32,
  /** HID report framing */
  HID: 64,
} as const;

/** KEYGEN.keys bit values. */
export const KeySelect = {
  /** the device signature key */
  SIGNATURE: 1,
  /** the device encryption key */
  ENCRYPTION: 2,
  /** the device authentication key */
  AUTHENTICATION: 4,
} as const;

/** CBOR types a message field may have. */
export type FieldType = 'uint' | 'bstr' | 'tstr' | 'bool' | 'array' | 'map';

/** One field of a message: its CBOR map key, name, type and whether it is required. */
export interface FieldSpec {
  readonly key: number;
  readonly name: string;
  readonly type: FieldType;
  readonly required: boolean;
}

/** The CBOR map fields of every message. */
export const MessageFields = {
  HELLO: [
    { key: 1, name: 'version', type: 'uint', required: true },
  ],
  INFO: [
    { key: 1, name: 'model', type: 'tstr', required: true },
    { key: 2, name: 'serial', type: 'tstr', required: true },
    { key: 3, name: 'firmware', type: 'tstr', required: true },
    { key: 4, name: 'capabilities', type: 'uint', required: true },
    { key: 5, name: 'state', type: 'uint', required: true },
    { key: 6, name: 'challenge', type: 'bstr', required: true },
  ],
  BENCH_AUTH: [
    { key: 1, name: 'challenge', type: 'bstr', required: true },
    { key: 2, name: 'bench_key', type: 'bstr', required: true },
    { key: 3, name: 'signature', type: 'bstr', required: true },
  ],
  BENCH_AUTH_OK: [
    { key: 1, name: 'state', type: 'uint', required: true },
  ],
  KEYGEN: [
    { key: 1, name: 'keys', type: 'uint', required: true },
    { key: 2, name: 'time', type: 'uint', required: true },
  ],
  PUBKEYS: [
    { key: 1, name: 'signature_key', type: 'bstr', required: true },
    { key: 2, name: 'encryption_key', type: 'bstr', required: true },
    { key: 3, name: 'authentication_key', type: 'bstr', required: true },
    { key: 4, name: 'device_profile', type: 'bstr', required: true },
  ],
  COGEN: [
    { key: 1, name: 'contribution', type: 'bstr', required: true },
    { key: 2, name: 'time', type: 'uint', required: true },
  ],
  PROOF: [
    { key: 1, name: 'signature_key', type: 'bstr', required: true },
    { key: 2, name: 'encryption_key', type: 'bstr', required: true },
    { key: 3, name: 'authentication_key', type: 'bstr', required: true },
    { key: 4, name: 'proof', type: 'bstr', required: true },
    { key: 5, name: 'device_profile', type: 'bstr', required: true },
  ],
  INSTALL: [
    { key: 1, name: 'connection', type: 'bstr', required: true },
    { key: 2, name: 'config', type: 'bstr', required: true },
  ],
  ACK: [
    { key: 1, name: 'state', type: 'uint', required: true },
  ],
  COMMIT: [
    { key: 1, name: 'record_digest', type: 'bstr', required: true },
  ],
  RECEIPT: [
    { key: 1, name: 'signature', type: 'bstr', required: true },
  ],
  RESET: [
    { key: 1, name: 'serial', type: 'tstr', required: true },
  ],
  ERROR: [
    { key: 1, name: 'code', type: 'uint', required: true },
    { key: 2, name: 'detail', type: 'tstr', required: false },
  ],
} as const satisfies Record<MessageTypeName, readonly FieldSpec[]>;

/** HELLO (0x01) fields: opens a session; any state. */
export interface HelloFields {
  /** key 1: the host's PROTOCOL_VERSION */
  version: number | bigint;
}

/** INFO (0x02) fields: who the device is and where it stands. */
export interface InfoFields {
  /** key 1: model name, as in devices/*.json */
  model: string;
  /** key 2: serial number */
  serial: string;
  /** key 3: firmware version */
  firmware: string;
  /** key 4: bitmask of capabilities[] */
  capabilities: number | bigint;
  /** key 5: states[] value */
  state: number | bigint;
  /** key 6: fresh device nonce (32 bytes) the bench signs in BENCH_AUTH */
  challenge: Uint8Array;
}

/** BENCH_AUTH (0x03) fields: the bench proves its key to a device that pins a provisioner key. */
export interface BenchAuthFields {
  /** key 1: the INFO challenge, echoed */
  challenge: Uint8Array;
  /** key 2: the bench public key */
  benchKey: Uint8Array;
  /** key 3: the bench signature over the challenge */
  signature: Uint8Array;
}

/** BENCH_AUTH_OK (0x04) fields: the bench is trusted for this session. */
export interface BenchAuthOkFields {
  /** key 1: states[] value */
  state: number | bigint;
}

/** KEYGEN (0x05) fields: make the device keys on the device (FACTORY); in a later state returns the same base keys. */
export interface KeygenFields {
  /** key 1: bitmask of keys[] to generate */
  keys: number | bigint;
  /** key 2: bench wall-clock time, Unix seconds: the Device Profile's Updated (devices need no RTC) */
  time: number | bigint;
}

/** PUBKEYS (0x06) fields: the device public keys and its self-signed Device Profile. */
export interface PubkeysFields {
  /** key 1: signature public key */
  signatureKey: Uint8Array;
  /** key 2: encryption public key, X25519 extended (u ‖ sign byte, 33 bytes) */
  encryptionKey: Uint8Array;
  /** key 3: authentication public key, X25519 extended (u ‖ sign byte, 33 bytes) */
  authenticationKey: Uint8Array;
  /** key 4: Device Profile (JWS General JSON, UTF-8) signed by the device signature key */
  deviceProfile: Uint8Array;
}

/** COGEN (0x07) fields: the bench contribution, sealed to the device's base encryption key (docs/enrollment.md). */
export interface CogenFields {
  /** key 1: MKBOX1 sealed box (label "contribution") of the contribution CBOR */
  contribution: Uint8Array;
  /** key 2: bench wall-clock time, Unix seconds: the composite Device Profile's Updated */
  time: number | bigint;
}

/** PROOF (0x08) fields: composite public keys and proof of possession. */
export interface ProofFields {
  /** key 1: composite signature public key */
  signatureKey: Uint8Array;
  /** key 2: composite encryption public key (X25519 extended, 33 bytes) */
  encryptionKey: Uint8Array;
  /** key 3: composite authentication public key (X25519 extended, 33 bytes) */
  authenticationKey: Uint8Array;
  /** key 4: Ed25519 signature by the composite signature key over the proof context (docs/enrollment.md) */
  proof: Uint8Array;
  /** key 5: Device Profile of the composite keys, signed by the composite signature key */
  deviceProfile: Uint8Array;
}

/** INSTALL (0x09) fields: connection and application configuration. */
export interface InstallFields {
  /** key 1: Connection CBOR signed by an administration key (Ed25519), naming this device */
  connection: Uint8Array;
  /** key 2: MKBOX1 sealed box (label "config") to the composite encryption key */
  config: Uint8Array;
}

/** ACK (0x0A) fields: INSTALL stored, or RESET done. */
export interface AckFields {
  /** key 1: states[] value */
  state: number | bigint;
}

/** COMMIT (0x0B) fields: close provisioning over the record. */
export interface CommitFields {
  /** key 1: digest of the provisioning record */
  recordDigest: Uint8Array;
}

/** RECEIPT (0x0C) fields: the device's signature over the record. */
export interface ReceiptFields {
  /** key 1: composite-key signature over the receipt context and the record digest */
  signature: Uint8Array;
}

/** RESET (0x0D) fields: wipe the keys of a device that is not COMMITTED, back to FACTORY (restart after an interrupted enrollment). */
export interface ResetFields {
  /** key 1: the device's serial number, echoed (a guard against resetting the wrong device) */
  serial: string;
}

/** ERROR (0x7F) fields: reply to any request that failed. */
export interface ErrorFields {
  /** key 1: errors[] value */
  code: number | bigint;
  /** key 2: human-readable detail */
  detail?: string;
}

/** Fields by message name. */
export interface MessageFieldsByName {
  HELLO: HelloFields;
  INFO: InfoFields;
  BENCH_AUTH: BenchAuthFields;
  BENCH_AUTH_OK: BenchAuthOkFields;
  KEYGEN: KeygenFields;
  PUBKEYS: PubkeysFields;
  COGEN: CogenFields;
  PROOF: ProofFields;
  INSTALL: InstallFields;
  ACK: AckFields;
  COMMIT: CommitFields;
  RECEIPT: ReceiptFields;
  RESET: ResetFields;
  ERROR: ErrorFields;
}
