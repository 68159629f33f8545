# Independent cross-check implementation (bitwise CRC-32C, Cheshire & Baker COBS) used to compute
# firmware-bindings/vectors frames/hid/cobs/crc lines. Not the TypeScript code.
import sys
def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF
def cobs(data):
    # the Wikipedia reference encoder: no extra 0x01 block when the data ends right after a full 254-byte block
    out = bytearray([0]); code_ptr = 0; code = 1; n = len(data)
    for i, b in enumerate(data):
        if b:
            out.append(b); code += 1
        if b == 0 or code == 0xFF:
            out[code_ptr] = code; code = 1; code_ptr = len(out)
            if b == 0 or i < n - 1:
                out.append(0)
    if code_ptr < len(out):
        out[code_ptr] = code
    return bytes(out)
def raw_frame(ver, typ, seq, flags, payload, length=None, crc_xor=0):
    L = len(payload) if length is None else length
    body = bytes([ver, typ, seq, flags, L >> 8, L & 0xFF]) + payload
    c = crc32c(body) ^ crc_xor
    return body + c.to_bytes(4, 'big')
def wire(fr): return cobs(fr) + b'\x00'
def frames(typ, seq, msg):
    chunks = [msg[i:i+512] for i in range(0, len(msg), 512)] or [b'']
    out = b''
    for i, ch in enumerate(chunks):
        more = 1 if i < len(chunks) - 1 else 0
        out += wire(raw_frame(1, typ, seq, (i << 1) | more, ch))
    return out
def hid(cid, typ, msg):
    reps = []
    first = cid.to_bytes(4,'big') + bytes([0x80 | typ, len(msg) >> 8, len(msg) & 0xFF]) + msg[:57]
    reps.append(first.ljust(64, b'\0'))
    rest = msg[57:]; s = 0
    while rest:
        r = cid.to_bytes(4,'big') + bytes([s]) + rest[:59]
        reps.append(r.ljust(64, b'\0')); rest = rest[59:]; s += 1
    return b''.join(reps)
def pattern(n): return bytes((i * 7 + 3) % 256 for i in range(n))
