"""Hostile input for the live server, seeded and mutation-based: HTTP requests, the websocket
handshake, signaling messages, offers (SDP), trickle ICE candidates and image uploads, each made by
mutating a valid one, plus the specific cases of issue 11. Used by benchmarks/fuzz_server.py and
tests/test_streaming_hostile.py. Every address in a case is loopback (nothing leaves the machine)."""

from __future__ import annotations

import base64
import io
import ipaddress
import json
import random
import struct
import zlib
from dataclasses import dataclass

from PIL import Image

TOKEN = "fuzz-token"
_FP256 = ":".join(f"{b:02X}" for b in range(32))
_TRANSPORT = ["a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host", "a=end-of-candidates", "a=ice-ufrag:hxqW",
              "a=ice-pwd:PHSa3oWBmjElorbM6CSjBz", f"a=fingerprint:sha-256 {_FP256}", "a=setup:actpass"]
OFFER_SDP = "\r\n".join([  # as a browser sends it (ICE gathered), every address loopback
    "v=0", "o=- 4004923707 4004923707 IN IP4 0.0.0.0", "s=-", "t=0 0", "a=group:BUNDLE 0 1",
    "a=msid-semantic:WMS *",
    "m=audio 9 UDP/TLS/RTP/SAVPF 96 0 8", "c=IN IP4 127.0.0.1", "a=sendrecv", "a=mid:0", "a=msid:s a",
    "a=rtcp:9 IN IP4 0.0.0.0", "a=rtcp-mux", "a=ssrc:1186778636 cname:fuzz", "a=rtpmap:96 opus/48000/2",
    "a=rtpmap:0 PCMU/8000", "a=rtpmap:8 PCMA/8000", *_TRANSPORT,
    "m=video 9 UDP/TLS/RTP/SAVPF 97 98", "c=IN IP4 127.0.0.1", "a=recvonly", "a=mid:1", "a=rtcp:9 IN IP4 0.0.0.0",
    "a=rtcp-mux", "a=rtpmap:97 VP8/90000", "a=rtcp-fb:97 nack", "a=rtcp-fb:97 nack pli", "a=rtpmap:98 rtx/90000",
    "a=fmtp:98 apt=97", *_TRANSPORT, ""])
CANDIDATE = "candidate:1 1 udp 2130706431 127.0.0.1 9 typ host"
HUGE_INT = "9" * 5000  # past Python's 4300-digit int limit
VALUES = [None, True, 0, -1, 1.5, 1e308, "", "x", "x" * 70000, "\udcff", "é∂\u202e", [], {}, [1, [2]], {"a": 1},
          "candidate:", "m=audio", "data:image/png;base64,", "../../etc/passwd", "drawn"]
ERROR_CODES = {"bad_message", "bad_sdp", "bad_image", "image_too_large", "bad_avatar", "bad_state", "timeout",
               "busy", "generation_failed"}  # every documented code but `internal`


@dataclass
class Case:
    kind: str  # "http": raw bytes on a TCP socket; "message": websocket text (or bytes) before any
    # call; "in_call": the same after an answered offer
    payload: bytes | str
    source: str  # which generator made it
    expect: tuple[str, ...] = ()  # the outcomes that are right; () = any clear answer


# ---- images -----------------------------------------------------------------------------------------
def image_bytes(fmt: str, size: tuple[int, int] = (64, 64)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 150, 120)).save(out, format=fmt)
    return out.getvalue()


def png_with_size(width: int, height: int) -> bytes:
    """A PNG whose header claims this size (a decompression bomb, read no further than its header)."""
    data = bytearray(image_bytes("PNG", (16, 16)))
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


def b64(data: bytes, data_url: bool = True) -> str:
    text = base64.b64encode(data).decode()
    return "data:image/png;base64," + text if data_url else text


# ---- mutation -------------------------------------------------------------------------------------
def mutate_text(rng: random.Random, text: str) -> str:
    pos = rng.randrange(len(text) + 1)
    op = rng.randrange(6)
    if op == 0:
        return text[:pos]
    if op == 1:
        return text[:pos] + text[pos + rng.randrange(1, 20):]
    if op == 2:
        return text[:pos] + rng.choice(["\x00", "\udcff", "é", "\r\n", " ", "%", "{", "\"", HUGE_INT]) + text[pos:]
    if op == 3:
        return text[:pos] + chr(rng.randrange(32, 127)) + text[pos + 1:]
    if op == 4:
        return text[:pos] + text[pos:pos + rng.randrange(1, 40)] * rng.randrange(2, 5) + text[pos:]
    return text.replace(str(rng.randrange(10)), rng.choice(["0", "-1", HUGE_INT[:12], "x"]), 1)


SDP_EDITS = [  # targeted contract breaks (issue 11 item 6) and parser traps
    ("a=sendrecv", "a=inactive"), ("a=sendrecv", "a=recvonly"), ("a=recvonly", "a=sendonly"),
    ("a=recvonly", "a=inactive"), ("m=audio 9", "m=audio 0"), ("m=video 9", "m=video 0"), ("a=mid:0\r\n", ""),
    ("a=mid:1\r\n", ""), ("a=mid:1", "a=mid:0"), (f"a=fingerprint:sha-256 {_FP256}\r\n", ""),
    (_FP256, "garbage"), (_FP256, _FP256[:-3]), (_FP256, "ZZ" + _FP256[2:]), ("sha-256", "sha-1"),
    ("sha-256", "md5"), ("a=ice-ufrag:hxqW\r\n", ""), ("a=ice-pwd:PHSa3oWBmjElorbM6CSjBz\r\n", ""),
    ("m=audio 9", "m=audio " + HUGE_INT), ("96 0 8", "96 300"), ("96 0 8", "96 x"), ("a=setup:actpass", "a=setup:x"),
    ("m=video", "m=application"), ("c=IN IP4 127.0.0.1", "c=IN IP4 nonsense"), ("127.0.0.1 9 typ", "127.0.0.1 typ"),
    ("a=rtpmap:96 opus/48000/2", "a=rtpmap:96"), ("a=fmtp:98 apt=97", "a=fmtp:98"), ("typ host", "typ x"),
    ("a=rtcp:9 IN IP4 0.0.0.0", "a=rtcp:x"), ("m=audio 9 UDP/TLS/RTP/SAVPF", "m=audio 9 udp"),
]


def mutate_sdp(rng: random.Random, sdp: str) -> str:
    lines = sdp.split("\r\n")
    op = rng.randrange(6)
    if op == 0:
        old, new = rng.choice(SDP_EDITS)
        return sdp.replace(old, new, 1 if rng.random() < 0.5 else -1)
    if op == 1 and len(lines) > 2:
        del lines[rng.randrange(len(lines) - 1)]
    elif op == 2:
        lines.insert(rng.randrange(len(lines)), rng.choice(lines))
    elif op == 3:
        i = rng.randrange(len(lines))
        lines[i] = mutate_text(rng, lines[i]) if lines[i] else lines[i]
    elif op == 4:
        i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
    else:
        return mutate_text(rng, sdp)
    return "\r\n".join(lines)


def loopback_only(text: str) -> str:
    """Point every address-like token of candidate lines at loopback, and no name at mDNS."""
    out = []
    for line in text.split("\n"):
        if "candidate" in line:
            bits = line.split(" ")
            for i, bit in enumerate(bits):
                try:
                    if not ipaddress.ip_address(bit.strip()).is_loopback:
                        bits[i] = "127.0.0.1"
                except ValueError:
                    if ".local" in bit:
                        bits[i] = bit.replace(".local", ".invalid")
            line = " ".join(bits)
        out.append(line)
    return "\n".join(out)


def mutate_message(rng: random.Random, msg: dict) -> str:
    msg = dict(msg)
    op = rng.randrange(7)
    if op == 0 and len(msg) > 1:
        del msg[rng.choice([k for k in msg if k != "type" or rng.random() < 0.3])]
    elif op == 1:
        msg[rng.choice(list(msg))] = rng.choice(VALUES)
    elif op == 2:
        msg[rng.choice(["x", "sdp", "candidate", "sdpMid", "sdpMLineIndex", "image", "id", "avatar", "text"])] = \
            rng.choice(VALUES)
    elif op == 3:
        msg["type"] = rng.choice(["offer", "candidate", "avatar", "prompt", "interrupt", "ping", "OFFER", "", "dance"])
    elif op == 4:
        return mutate_text(rng, json.dumps(msg))
    elif op == 5:  # a number past the 4300-digit limit, as raw JSON
        key = rng.choice(list(msg) + ["sdpMLineIndex"])
        return json.dumps({k: v for k, v in msg.items() if k != key})[:-1] + f', "{key}": {HUGE_INT}}}'
    else:
        return rng.choice(["[" * 5000, "null", "[]", "\"offer\"", "{}", "{\"type\": [\"offer\"]}", ""])
    return json.dumps(msg)


def mutate_candidate(rng: random.Random) -> dict:
    bits = CANDIDATE.split(" ")
    op = rng.randrange(5)
    if op == 0:  # fewer fields (aiortc asserts on them)
        bits = bits[:rng.randrange(len(bits))]
    elif op == 1:
        bits[rng.randrange(len(bits))] = rng.choice(["x", "-1", "99999", HUGE_INT[:30], "", "typ", "localhost"])
    elif op == 2:
        bits.insert(rng.randrange(len(bits) + 1), rng.choice(["raddr", "rport", "tcptype", "x"]))
    msg = {"type": "candidate", "candidate": loopback_only(" ".join(bits)), "sdpMid": "0", "sdpMLineIndex": 0}
    if op == 3:  # neither sdpMid nor sdpMLineIndex
        del msg["sdpMid"], msg["sdpMLineIndex"]
    elif op == 4:
        msg[rng.choice(["sdpMid", "sdpMLineIndex"])] = rng.choice(VALUES[:8] + ["9", 99])
    return msg


def mutate_upload(rng: random.Random) -> str:
    data = bytearray(image_bytes(rng.choice(["PNG", "JPEG", "WEBP"])))
    op = rng.randrange(4)
    if op == 0:
        data = data[:rng.randrange(len(data))]
    elif op == 1:
        for _ in range(rng.randrange(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif op == 2:
        data[:rng.randrange(1, 16)] = bytes(rng.randrange(256) for _ in range(8))
    else:
        return mutate_text(rng, b64(bytes(data), data_url=rng.random() < 0.5))
    return b64(bytes(data), data_url=rng.random() < 0.5)


# ---- HTTP ----------------------------------------------------------------------------------------
WS_HEADERS = ["Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
              "Sec-WebSocket-Version: 13"]
PATHS = ["/healthz", "/", "/demo/", "/src/index.js", "/avatars.json", "/avatars/drawn.png", "/nothing"]


def http_request(path: str = "/healthz", headers: list[str] | None = None, method: str = "GET",
                 host: str = "Host: {host}") -> bytes:
    """{host} and {port} are filled in by the runner."""
    lines = [f"{method} {path} HTTP/1.1"] + ([host] if host else []) + (headers or [])
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")


def ws_request(headers: list[str] = (), token: bool = True, host: str = "Host: {host}") -> bytes:
    return http_request(f"/ws?token={TOKEN}" if token else "/ws", WS_HEADERS + list(headers), host=host)


def mutate_http(rng: random.Random) -> bytes:
    op = rng.randrange(6)
    if op == 0:  # paths
        path = rng.choice(PATHS) + rng.choice(["/" + "a" * rng.choice([255, 256, 300, 5000]), "/%2e%2e/%2e%2e/etc",
                                               "/%00", "/%ff%fe", "/\udcff", "/é", "//", "?x=" + "%" * 50, "/.git",
                                               "\\..\\x", "/" + "%2F" * 300])
        return http_request(path)
    if op == 1:  # headers on the websocket path
        extra = rng.sample([f"Authorization: Bearer {TOKEN}", "Authorization: Bearer \udcff\udcfe",
                            "Authorization: Basic x", "Origin: http://evil.example", "Origin: null",
                            "Origin: https://127.0.0.1:{port}", "Origin: http://127.0.0.1:{port}",
                            "Origin: \udcff", "X-Long: " + "x" * 6000, "Sec-WebSocket-Version: 8",
                            "Sec-WebSocket-Key: x", "Upgrade: nonsense", "Host: evil.example"], rng.randrange(1, 4))
        return ws_request(extra, token=rng.random() < 0.6, host=rng.choice(["Host: {host}", "", "Host: \udcff"]))
    if op == 2:  # duplicated headers
        name = rng.choice(["Authorization: Bearer x", "Origin: http://127.0.0.1:{port}", "Host: {host}"])
        return ws_request([name, name])
    data = bytearray(ws_request() if rng.random() < 0.5 else http_request(rng.choice(PATHS)))
    if op == 3:
        return bytes(data[:rng.randrange(len(data))])
    if op == 4:
        for _ in range(rng.randrange(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    return bytes(rng.randrange(256) for _ in range(rng.randrange(0, 200)))


# ---- the cases -----------------------------------------------------------------------------------
def offer(sdp: str = OFFER_SDP, **extra) -> str:
    return json.dumps({"type": "offer", "sdp": sdp, **extra})


def specific_cases() -> list[Case]:
    """The inputs issue 11 names, each with the answer it must get."""
    sdp = OFFER_SDP
    no_fp = sdp.replace(f"a=fingerprint:sha-256 {_FP256}\r\n", "")
    cands = [CANDIDATE.rsplit(" ", n)[0] for n in (1, 3, 5)]
    cases = [
        Case("http", b"", "bare connect", ("closed",)),
        Case("http", http_request("/" + "a" * 256), "path segment of 256 chars", ("http:404",)),
        Case("http", http_request("/demo/" + "b" * 5000), "path segment of 5000 chars", ("http:404",)),
        Case("http", ws_request(["Authorization: Bearer \udcff\udcfe"], token=False), "non-ASCII Authorization",
             ("http:400", "http:401")),
        Case("http", ws_request([f"Authorization: Bearer {TOKEN}"] * 2, token=False), "duplicate Authorization",
             ("http:400",)),
        Case("http", ws_request(["Origin: http://127.0.0.1:{port}"] * 2), "duplicate Origin", ("http:400",)),
        Case("http", ws_request(["Origin: http://evil.example:{port}"], host="Host: evil.example:{port}"),
             "DNS rebinding (Host and Origin both foreign)", ("http:403",)),
        Case("http", ws_request(["Origin: https://127.0.0.1:{port}"]), "https origin on an http server", ("http:403",)),
        Case("http", ws_request(["Origin: http://127.0.0.1:{port}"]), "own origin", ("http:101",)),
        Case("http", ws_request(["Origin: http://localhost:{port}"], host="Host: localhost:{port}"), "own origin by name",
             ("http:101",)),
        Case("http", ws_request(token=False), "no token", ("http:401",)),
        Case("http", http_request(f"/ws?token={TOKEN}"), "plain HTTP on /ws", ("http:426",)),
        Case("message", json.dumps({"type": "candidate", "candidate": CANDIDATE, "sdpMLineIndex": 0})[:-1] +
             f', "sdpMid": {HUGE_INT}}}', "integer of 5000 digits", ("error:bad_message",)),
        Case("message", offer(sdp.replace("a=mid:0\r\n", "")), "offer without the audio a=mid", ("error:bad_sdp",)),
        Case("message", offer(sdp.replace("a=recvonly", "a=sendonly")), "video sendonly", ("error:bad_sdp",)),
        Case("message", offer(sdp.replace("m=audio 9", "m=audio 0")), "audio on port 0", ("error:bad_sdp",)),
        Case("message", offer(no_fp.replace(f"a=fingerprint:sha-256 {_FP256}\r\n", "")), "no fingerprint",
             ("error:bad_sdp",)),
        Case("message", offer(sdp.replace(_FP256, "garbage")), "garbage fingerprint", ("error:bad_sdp",)),
        Case("message", offer(), "a good offer", ("answer",)),
        Case("message", json.dumps({"type": "avatar", "image": b64(png_with_size(60000, 60000))}),
             "header claims 60000x60000", ("error:image_too_large",)),
        Case("message", json.dumps({"type": "avatar", "image": b64(bytes(2_500_000))}), "upload of 2.5 MB",
             ("error:image_too_large",)),
        Case("message", json.dumps({"type": "avatar", "image": b64(bytes(6_000_000))}), "upload of 6 MB",
             ("error:image_too_large",)),
        Case("in_call", json.dumps({"type": "candidate", "candidate": CANDIDATE}), "candidate without mid or index",
             ("error:bad_message",)),
        Case("in_call", json.dumps({"type": "candidate", "candidate": CANDIDATE, "sdpMid": "0"}), "a good candidate",
             ("accepted",)),
    ]
    cases += [Case("in_call", json.dumps({"type": "candidate", "candidate": c, "sdpMid": "0"}),
                   f"candidate of {len(c.split())} fields", ("error:bad_message",)) for c in cands]
    cases += [Case("message", json.dumps({"type": "avatar", "image": b64(image_bytes(fmt))}), f"a {fmt} upload",
                   ("error:bad_image",)) for fmt in ("GIF", "BMP", "TIFF", "ICO", "PPM", "TGA")]
    cases += [Case("message", json.dumps({"type": "avatar", "image": b64(image_bytes(fmt))}), f"a {fmt} upload",
                   ("avatar_ok",)) for fmt in ("PNG", "JPEG", "WEBP")]
    return cases


def make_cases(count: int, seed: int = 0) -> list[Case]:
    """The specific cases, then `count` minus those mutated ones, mixed by a seeded generator."""
    rng = random.Random(seed)
    cases = specific_cases()
    base = [{"type": "avatar", "id": "drawn"}, {"type": "prompt", "text": "smile"}, {"type": "interrupt"},
            {"type": "ping"}, {"type": "candidate", "candidate": CANDIDATE, "sdpMid": "0", "sdpMLineIndex": 0}]
    while len(cases) < count:
        roll = rng.random()
        if roll < 0.35:
            cases.append(Case("http", mutate_http(rng), "http"))
        elif roll < 0.55:
            cases.append(Case("message", offer(loopback_only(mutate_sdp(rng, OFFER_SDP))), "sdp"))
        elif roll < 0.62:
            cases.append(Case("message", loopback_only(mutate_message(rng, json.loads(offer()))), "offer message"))
        elif roll < 0.72:
            cases.append(Case("message", json.dumps({"type": "avatar", "image": mutate_upload(rng)}), "upload"))
        elif roll < 0.82:
            cases.append(Case("message", loopback_only(mutate_message(rng, rng.choice(base))), "message"))
        elif roll < 0.94:
            cases.append(Case("in_call", json.dumps(mutate_candidate(rng)), "candidate"))
        else:
            cases.append(Case("in_call", loopback_only(mutate_message(rng, rng.choice(base[1:]))), "call message"))
    return cases
