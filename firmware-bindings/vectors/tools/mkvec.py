# Recomputes firmware-bindings/vectors/*.hex (crc32c, cobs, frames, hid) with the independent Python
# implementation in xcheck.py (not the TypeScript or C code): `python3 firmware-bindings/vectors/tools/mkvec.py`.
from xcheck import *
import os
V = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..') + '/'
def w(name, header, lines):
    with open(V + name, 'w') as f:
        f.write(header.strip() + '\n')
        for l in lines: f.write(l + '\n')

# ---------- crc32c ----------
crc = [
  ('check_123456789', b'123456789', 0xE3069283),
  ('rfc3720_b4_zeros32', bytes(32), 0x8A9136AA),
  ('rfc3720_b4_ones32', b'\xff' * 32, 0x62A8AB43),
  ('rfc3720_b4_incrementing32', bytes(range(32)), 0x46DD794E),
  ('rfc3720_b4_decrementing32', bytes(range(31, -1, -1)), 0x113FDB5C),
]
lines = []
for n, d, c in crc:
    assert crc32c(d) == c, n
    lines.append(f'{n}: {d.hex()} = {c:08x}')
for n, d in [('one_byte_00', b'\0'), ('one_byte_ff', b'\xff'), ('pattern_1000', pattern(1000)), ('frame_header_hello', bytes.fromhex('01010000000003a10101'))]:
    lines.append(f'{n}: {d.hex()} = {crc32c(d):08x}')
w('crc32c.hex', '''
# CRC-32C (Castagnoli; reflected, poly 0x82F63B78, init 0xFFFFFFFF, xorout 0xFFFFFFFF).
# Line format:  name: DATA_HEX = CRC  (CRC as 8 hex digits, the numeric value; frames carry it big-endian)
# Checked: check_123456789 is the standard check value; the rfc3720_b4_* values are RFC 3720 Appendix B.4
# (byte strings there are the CRC little-endian: "aa 36 91 8a" = 0x8a9136aa). The other lines were computed by an
# independent bitwise Python implementation (not the TypeScript or C table-driven code), which also reproduces
# every published value above. pattern(n) below and in other files: byte i = (7*i + 3) mod 256.
''', lines)

# ---------- cobs ----------
wiki = [
  ('wikipedia_1', b'\x00'), ('wikipedia_2', b'\x00\x00'), ('wikipedia_3', b'\x00\x11\x00'),
  ('wikipedia_4', b'\x11\x22\x00\x33'), ('wikipedia_5', b'\x11\x22\x33\x44'), ('wikipedia_6', b'\x11\x00\x00\x00'),
  ('wikipedia_7_254_nonzero', bytes(range(1, 255))), ('wikipedia_8_zero_then_254', bytes(range(0, 255))),
  ('wikipedia_9_255_nonzero', bytes(range(1, 256))), ('wikipedia_10', bytes(range(2, 256)) + b'\0'),
  ('wikipedia_11', bytes(range(3, 256)) + b'\0\x01'),
]
expected_wiki = {'wikipedia_1': '0101', 'wikipedia_2': '010101', 'wikipedia_3': '01021101', 'wikipedia_4': '0311220233',
  'wikipedia_5': '0511223344', 'wikipedia_6': '0211010101'}
lines = []
for n, d in wiki:
    e = cobs(d)
    if n in expected_wiki: assert e.hex() == expected_wiki[n], n
    lines.append(f'{n}: {d.hex()} = {e.hex()}')
for n, d in [('single_nonzero', b'\x42'), ('pattern_522', pattern(522)), ('nonzero_508', bytes([0x5a]) * 508), ('nonzero_509', bytes([0x5a]) * 509)]:
    lines.append(f'{n}: {d.hex()} = {cobs(d).hex()}')
lines += [
  'bad_code_past_end: 051122 ! BAD_LENGTH',
  'bad_code_past_end_2: 02 ! BAD_LENGTH',
  'bad_zero_inside: 0211000101 ! BAD_LENGTH',
  'bad_zero_code: 00 ! BAD_LENGTH',
]
w('cobs.hex', '''
# COBS (Cheshire & Baker), the encoder of the Wikipedia reference: a full 254-byte block at the very end of the
# data is NOT followed by an extra 0x01 code byte. Encoded forms exclude the 0x00 frame delimiter.
# Line format:  name: RAW_HEX = ENCODED_HEX        (encode(RAW) == ENCODED and decode(ENCODED) == RAW)
#               name: ENCODED_HEX ! BAD_LENGTH     (decode must fail: a code byte pointing past the end, or a 0x00 inside)
# A decoder also accepts the paper's form with a trailing 0x01 after a final 0xFF block (same data); encoders
# never produce it.
# Checked: wikipedia_1..11 are the examples of en.wikipedia.org/wiki/Consistent_Overhead_Byte_Stuffing (1-6 also
# asserted as literal hex in the generator); the rest computed by an independent Python implementation.
''', lines)

# ---------- frames ----------
lines = []
good = [
  ('empty_hello', 0x01, 0x00, b''),
  ('hello_version_1', 0x01, 0x07, bytes.fromhex('a10101')),
  ('error_bad_state', 0x7f, 0xff, bytes.fromhex('a2011840026962616420737461746' + '5')),
  ('zeros_5', 0x02, 0x10, bytes(5)),
  ('payload_512_one_frame', 0x06, 0x01, pattern(512)),
  ('payload_513_two_frames', 0x06, 0x02, pattern(513)),
  ('payload_1500_three_frames', 0x08, 0x80, pattern(1500)),
  ('payload_4096_eight_frames', 0x0a, 0xfe, pattern(4096)),
]
for n, t, s, m in good:
    lines.append(f'{n}: {bytes([t, s]).hex()}{m.hex()} = {frames(t, s, m).hex()}')
hello = bytes.fromhex('a10101')
def flip_crc(fr): return fr[:-1] + bytes([fr[-1] ^ 0x01])
bad = [
  ('bad_crc_last_byte', wire(flip_crc(raw_frame(1, 1, 7, 0, hello))), 'BAD_CRC'),
  ('bad_crc_payload_bit', wire(raw_frame(1, 1, 7, 0, hello)[:7] + b'\x03' + raw_frame(1, 1, 7, 0, hello)[8:]), 'BAD_CRC'),
  ('bad_version_0', wire(raw_frame(0, 1, 7, 0, hello)), 'BAD_VERSION'),
  ('bad_version_2', wire(raw_frame(2, 1, 7, 0, hello)), 'BAD_VERSION'),
  ('length_says_4_has_3', wire(raw_frame(1, 1, 7, 0, hello, length=4)), 'BAD_LENGTH'),
  ('length_says_2_has_3', wire(raw_frame(1, 1, 7, 0, hello, length=2)), 'BAD_LENGTH'),
  ('too_short_9_bytes', wire(bytes.fromhex('010100000000') + b'\x01\x02\x03'), 'BAD_LENGTH'),
  ('cobs_code_past_end', bytes.fromhex('0801010300'), 'BAD_LENGTH'),
  ('truncated_last_byte', cobs(raw_frame(1, 1, 7, 0, hello))[:-1] + b'\x00', 'BAD_LENGTH'),
  ('length_513', wire(raw_frame(1, 6, 1, 0, pattern(513))), 'TOO_LARGE'),
  ('oversized_600_nonzero', bytes([0x11]) * 600 + b'\x00', 'TOO_LARGE'),
  ('fragment_index_1_first', wire(raw_frame(1, 6, 1, (1 << 1), b'\x01\x02')), 'FRAGMENT_ORDER'),
  ('fragment_gap_0_2', wire(raw_frame(1, 6, 1, 1, b'\x01\x02')) + wire(raw_frame(1, 6, 1, (2 << 1), b'\x03')), 'FRAGMENT_ORDER'),
  ('fragment_seq_changes', wire(raw_frame(1, 6, 1, 1, b'\x01\x02')) + wire(raw_frame(1, 6, 2, (1 << 1), b'\x03')), 'FRAGMENT_ORDER'),
  ('fragment_type_changes', wire(raw_frame(1, 6, 1, 1, b'\x01\x02')) + wire(raw_frame(1, 8, 1, (1 << 1), b'\x03')), 'FRAGMENT_ORDER'),
  ('fragment_index_8', wire(raw_frame(1, 6, 1, (8 << 1), b'\x01')), 'FRAGMENT_ORDER'),
  ('index_7_with_more', b''.join(wire(raw_frame(1, 6, 1, (i << 1) | 1, b'\x01')) for i in range(8)), 'TOO_LARGE'),
]
for n, wv, e in bad:
    lines.append(f'{n}: {wv.hex()} ! {e}')
w('frames.hex', '''
# Serial frames (docs/protocol-framing.md "Serial frames"; docs/protocol.md gives the decoder's check order).
# Line format:  name: TYPE SEQ MESSAGE = WIRE   written as one hex string TTSSMMMM... = WIRE
#                 (first byte the message type, second the seq, the rest the CBOR message, possibly empty);
#                 encodeFrames(TYPE, SEQ, MESSAGE) == WIRE (all frames, each COBS-encoded and followed by 0x00),
#                 and a fresh decoder fed WIRE yields exactly that one message and no error.
#               name: WIRE ! ERROR   a fresh decoder fed WIRE reports ERROR (errors[] name) as its first error and
#                 yields no message.
# Fragmentation: full 512-byte fragments, then the rest; flags = index << 1 | more.
# Checked: computed by an independent Python implementation (bitwise CRC-32C, Wikipedia COBS), not by the
# TypeScript or C code; hello_version_1 by hand: frame 01 01 07 00 0003 a10101 + CRC-32C(those 9 bytes).
''', lines)

# ---------- hid ----------
lines = []
for n, cid, t, m in [
  ('hello_one_report', 0x01020304, 0x01, hello),
  ('empty_message', 0xffffffff, 0x04, b''),
  ('exactly_57', 0x00000001, 0x06, pattern(57)),
  ('58_one_continuation', 0x00000001, 0x06, pattern(58)),
  ('116_exactly_two', 0xcafe0001, 0x08, pattern(116)),
  ('4096_max', 0x12345678, 0x0a, pattern(4096)),
]:
    lines.append(f'{n}: {cid.to_bytes(4, "big").hex()}{t:02x}{m.hex()} = {hid(cid, t, m).hex()}')
two = hid(0x01020304, 0x06, pattern(200))  # 4 reports
r = [two[i:i+64] for i in range(0, len(two), 64)]
def initp(cid, cmd, bcnt, data=b''): return (cid.to_bytes(4, 'big') + bytes([cmd, bcnt >> 8, bcnt & 0xff]) + data).ljust(64, b'\0')
bad = [
  ('continuation_first', r[1], 'FRAGMENT_ORDER'),
  ('seq_skips', r[0] + r[2], 'FRAGMENT_ORDER'),
  ('seq_repeats', r[0] + r[1] + r[1], 'FRAGMENT_ORDER'),
  ('cid_changes', r[0] + bytes.fromhex('01020305') + r[1][4:], 'BAD_CHANNEL'),
  ('init_while_reassembling', r[0] + r[1] + initp(0x01020304, 0x86, 200, pattern(57)), 'FRAGMENT_ORDER'),
  ('bcnt_4097', initp(0x01020304, 0x86, 4097, pattern(57)), 'TOO_LARGE'),
  ('short_report_63', r[0][:63], 'BAD_LENGTH'),
]
for n, b, e in bad:
    lines.append(f'{n}: {b.hex()} ! {e}')
w('hid.hex', '''
# HID reports, 64 bytes each (docs/protocol-framing.md "HID reports").
# Line format:  name: CID TYPE MESSAGE = REPORTS   written as one hex string CCCCCCCCTTMMMM... = REPORTS
#                 (4-byte CID big-endian, 1-byte message type, then the message, possibly empty);
#                 encodeReports(CID, TYPE, MESSAGE) == REPORTS (concatenated 64-byte reports, zero padded),
#                 and a reassembler for that CID fed the reports one by one yields exactly that message.
#               name: REPORTS ! ERROR   REPORTS is a sequence of reports (the last may be short); a reassembler
#                 expecting the CID of the first report reports ERROR as its first error and yields no message.
# Checked: computed by an independent Python implementation, not by the TypeScript or C code; hello_one_report
# by hand: 01020304 81 0003 a10101 then 54 zero bytes.
''', lines)
