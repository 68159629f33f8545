/* generated — do not edit; source firmware-bindings/protocol/protocol.json, regenerate with npm run protocol:gen */
/* The meshkit device protocol: constants, message types, field keys, states, status codes.
 * C99 and C++ compatible; no functions. Status codes are positive on the wire; C functions may
 * return them negated. Framing and encoding rules: docs/protocol.md. */
#ifndef MESHKIT_PROTOCOL_H
#define MESHKIT_PROTOCOL_H

#define MK_PROTOCOL_DEFINITION_VERSION 1
#define MK_PROTOCOL_VERSION 1 /* frame version byte and HELLO.version */
#define MK_MAX_FRAME_PAYLOAD 512 /* largest payload of one serial frame */
#define MK_MAX_MESSAGE 4096 /* largest CBOR message (after reassembly) */
#define MK_MAX_FRAGMENTS 8 /* most serial frames one message is split into */
#define MK_FRAME_OVERHEAD 10 /* decoded frame bytes besides the payload: 6 header + 4 CRC */
#define MK_MAX_ENCODED_FRAME 525 /* largest COBS-encoded frame without its 0x00 delimiter: 512 + 10 + 3 */
#define MK_HID_REPORT_SIZE 64 /* HID report size in bytes */
#define MK_HID_INIT_DATA 57 /* message bytes in a HID init packet */
#define MK_HID_CONT_DATA 59 /* message bytes in a HID continuation packet */
#define MK_CBOR_MAX_DEPTH 8 /* deepest nesting of arrays and maps */
#define MK_MAX_CONFIG 1024 /* largest application configuration (plaintext bytes) INSTALL carries */

/* message types (frame type byte; HID CMD = 0x80 | type) */
typedef enum mk_msg_type {
  MK_MSG_HELLO = 0x01, /* opens a session; any state */
  MK_MSG_INFO = 0x02, /* who the device is and where it stands */
  MK_MSG_BENCH_AUTH = 0x03, /* the bench proves its key to a device that pins a provisioner key */
  MK_MSG_BENCH_AUTH_OK = 0x04, /* the bench is trusted for this session */
  MK_MSG_KEYGEN = 0x05, /* make the device keys on the device (FACTORY); in a later state returns the same base keys */
  MK_MSG_PUBKEYS = 0x06, /* the device public keys and its self-signed Device Profile */
  MK_MSG_COGEN = 0x07, /* the bench contribution, sealed to the device's base encryption key (docs/enrollment.md) */
  MK_MSG_PROOF = 0x08, /* composite public keys and proof of possession */
  MK_MSG_INSTALL = 0x09, /* connection and application configuration */
  MK_MSG_ACK = 0x0A, /* INSTALL stored, or RESET done */
  MK_MSG_COMMIT = 0x0B, /* close provisioning over the record */
  MK_MSG_RECEIPT = 0x0C, /* the device's signature over the record */
  MK_MSG_RESET = 0x0D, /* wipe the keys of a device that is not COMMITTED, back to FACTORY (restart after an interrupted enrollment) */
  MK_MSG_ERROR = 0x7F /* reply to any request that failed */
} mk_msg_type;

/* device states */
typedef enum mk_state {
  MK_STATE_FACTORY = 0, /* fresh from the factory: no keys, no record */
  MK_STATE_AUTHENTICATED = 1, /* a trusted bench proved its key (BENCH_AUTH) in this session */
  MK_STATE_KEYS_GENERATED = 2, /* device keys made on the device (KEYGEN) */
  MK_STATE_COGENERATED = 3, /* bench contribution applied, composite keys proven (COGEN) */
  MK_STATE_INSTALLED = 4, /* connection and configuration stored (INSTALL) */
  MK_STATE_COMMITTED = 5 /* record digest signed (COMMIT); provisioning complete */
} mk_state;

/* status codes (ERROR.code), in bands */
typedef enum mk_status {
  MK_OK = 0, /* ok: success */
  MK_ERR_BAD_CRC = 1, /* framing: frame CRC-32C does not match */
  MK_ERR_BAD_VERSION = 2, /* framing: frame version is not PROTOCOL_VERSION */
  MK_ERR_BAD_LENGTH = 3, /* framing: frame or report size disagrees with its length field, or malformed COBS */
  MK_ERR_FRAGMENT_ORDER = 4, /* framing: fragment or continuation out of order, or type/seq changed mid-message */
  MK_ERR_TOO_LARGE = 5, /* framing: frame, fragment count or message larger than allowed */
  MK_ERR_BAD_CHANNEL = 6, /* framing: HID report on an unexpected channel id */
  MK_ERR_CBOR_INVALID = 32, /* encoding: not well-formed or outside the CBOR subset */
  MK_ERR_CBOR_NONCANONICAL = 33, /* encoding: non-shortest integer or length, or map keys not strictly increasing */
  MK_ERR_MISSING_FIELD = 34, /* encoding: a required message field is absent */
  MK_ERR_WRONG_TYPE = 35, /* encoding: a message field has the wrong CBOR type, or the message is not a map */
  MK_ERR_BAD_STATE = 64, /* protocol: the request is not allowed in the device's state */
  MK_ERR_UNKNOWN_MESSAGE = 65, /* protocol: unknown message type */
  MK_ERR_NOT_AUTHENTICATED = 66, /* protocol: the request needs BENCH_AUTH first */
  MK_ERR_BAD_SIGNATURE = 96, /* crypto: a signature does not verify or the signer is not trusted */
  MK_ERR_COGEN_MISMATCH = 97, /* crypto: composite keys do not agree */
  MK_ERR_DECRYPT_FAILED = 98, /* crypto: an encrypted field cannot be decrypted */
  MK_ERR_WRONG_DEVICE = 99, /* crypto: a signed object names another device */
  MK_ERR_FLASH = 128, /* platform: flash read or write failed */
  MK_ERR_RNG = 129 /* platform: random number generator failed */
} mk_status;

#define MK_BAND_FRAMING_MIN 1
#define MK_BAND_FRAMING_MAX 31
#define MK_BAND_ENCODING_MIN 32
#define MK_BAND_ENCODING_MAX 63
#define MK_BAND_PROTOCOL_MIN 64
#define MK_BAND_PROTOCOL_MAX 95
#define MK_BAND_CRYPTO_MIN 96
#define MK_BAND_CRYPTO_MAX 127
#define MK_BAND_PLATFORM_MIN 128
#define MK_BAND_PLATFORM_MAX 255

/* INFO.capabilities bits */
#define MK_CAP_ED25519 (1u << 0) /* Ed25519 signature keys */
#define MK_CAP_ED448 (1u << 1) /* Ed448 signature keys */
#define MK_CAP_X25519 (1u << 2) /* X25519 encryption keys */
#define MK_CAP_X448 (1u << 3) /* X448 encryption keys */
#define MK_CAP_COGEN (1u << 4) /* key co-generation */
#define MK_CAP_SERIAL (1u << 5) /* serial (COBS) framing */
#define MK_CAP_HID (1u << 6) /* HID report framing */

/* KEYGEN.keys bits */
#define MK_KEY_SIGNATURE (1u << 0) /* the device signature key */
#define MK_KEY_ENCRYPTION (1u << 1) /* the device encryption key */
#define MK_KEY_AUTHENTICATION (1u << 2) /* the device authentication key */

/* requests: the persistent states that accept them (bitmask of 1u << state; any other state -> BAD_STATE)
 * and whether BENCH_AUTH must have succeeded in the session first (else NOT_AUTHENTICATED) */
#define MK_ALLOWED_HELLO ((1u << MK_STATE_FACTORY) | (1u << MK_STATE_KEYS_GENERATED) | (1u << MK_STATE_COGENERATED) | (1u << MK_STATE_INSTALLED) | (1u << MK_STATE_COMMITTED)) /* opens a session in any state */
#define MK_AUTH_HELLO 0
#define MK_ALLOWED_BENCH_AUTH ((1u << MK_STATE_FACTORY) | (1u << MK_STATE_KEYS_GENERATED) | (1u << MK_STATE_COGENERATED) | (1u << MK_STATE_INSTALLED) | (1u << MK_STATE_COMMITTED)) /* after HELLO, in any state */
#define MK_AUTH_BENCH_AUTH 0
#define MK_ALLOWED_KEYGEN ((1u << MK_STATE_FACTORY) | (1u << MK_STATE_KEYS_GENERATED) | (1u << MK_STATE_COGENERATED) | (1u << MK_STATE_INSTALLED) | (1u << MK_STATE_COMMITTED)) /* FACTORY: generate, → KEYS_GENERATED; later: the same base keys again */
#define MK_AUTH_KEYGEN 1
#define MK_ALLOWED_COGEN ((1u << MK_STATE_KEYS_GENERATED) | (1u << MK_STATE_COGENERATED) | (1u << MK_STATE_INSTALLED) | (1u << MK_STATE_COMMITTED)) /* KEYS_GENERATED: → COGENERATED; later: only the same contribution box again */
#define MK_AUTH_COGEN 1
#define MK_ALLOWED_INSTALL ((1u << MK_STATE_COGENERATED) | (1u << MK_STATE_INSTALLED) | (1u << MK_STATE_COMMITTED)) /* COGENERATED: → INSTALLED; later: only the same bytes again */
#define MK_AUTH_INSTALL 1
#define MK_ALLOWED_COMMIT ((1u << MK_STATE_INSTALLED) | (1u << MK_STATE_COMMITTED)) /* INSTALLED: → COMMITTED; later: only the same record digest again */
#define MK_AUTH_COMMIT 1
#define MK_ALLOWED_RESET ((1u << MK_STATE_FACTORY) | (1u << MK_STATE_KEYS_GENERATED) | (1u << MK_STATE_COGENERATED) | (1u << MK_STATE_INSTALLED)) /* → FACTORY, every key and digest wiped; never once COMMITTED */
#define MK_AUTH_RESET 1

/* CBOR map keys of each message: MK_F_<MESSAGE>_<FIELD> */
#define MK_F_HELLO_VERSION 1 /* uint */
#define MK_F_INFO_MODEL 1 /* tstr */
#define MK_F_INFO_SERIAL 2 /* tstr */
#define MK_F_INFO_FIRMWARE 3 /* tstr */
#define MK_F_INFO_CAPABILITIES 4 /* uint */
#define MK_F_INFO_STATE 5 /* uint */
#define MK_F_INFO_CHALLENGE 6 /* bstr */
#define MK_F_BENCH_AUTH_CHALLENGE 1 /* bstr */
#define MK_F_BENCH_AUTH_BENCH_KEY 2 /* bstr */
#define MK_F_BENCH_AUTH_SIGNATURE 3 /* bstr */
#define MK_F_BENCH_AUTH_OK_STATE 1 /* uint */
#define MK_F_KEYGEN_KEYS 1 /* uint */
#define MK_F_KEYGEN_TIME 2 /* uint */
#define MK_F_PUBKEYS_SIGNATURE_KEY 1 /* bstr */
#define MK_F_PUBKEYS_ENCRYPTION_KEY 2 /* bstr */
#define MK_F_PUBKEYS_AUTHENTICATION_KEY 3 /* bstr */
#define MK_F_PUBKEYS_DEVICE_PROFILE 4 /* bstr */
#define MK_F_COGEN_CONTRIBUTION 1 /* bstr */
#define MK_F_COGEN_TIME 2 /* uint */
#define MK_F_PROOF_SIGNATURE_KEY 1 /* bstr */
#define MK_F_PROOF_ENCRYPTION_KEY 2 /* bstr */
#define MK_F_PROOF_AUTHENTICATION_KEY 3 /* bstr */
#define MK_F_PROOF_PROOF 4 /* bstr */
#define MK_F_PROOF_DEVICE_PROFILE 5 /* bstr */
#define MK_F_INSTALL_CONNECTION 1 /* bstr */
#define MK_F_INSTALL_CONFIG 2 /* bstr */
#define MK_F_ACK_STATE 1 /* uint */
#define MK_F_COMMIT_RECORD_DIGEST 1 /* bstr */
#define MK_F_RECEIPT_SIGNATURE 1 /* bstr */
#define MK_F_RESET_SERIAL 1 /* tstr */
#define MK_F_ERROR_CODE 1 /* uint */
#define MK_F_ERROR_DETAIL 2 /* tstr, optional */

#endif /* MESHKIT_PROTOCOL_H */
