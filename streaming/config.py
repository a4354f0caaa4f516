"""Server settings: limits, safety and timing, all in one place."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from avatar.profiles import DEFAULT_PROFILE
from avatar.video import is_stream_url

from .ice import ICE_ENV, ice_servers_from

# The demo page and the JS client: `client/` at the top of a checkout, shipped in the wheel as
# streaming/client/ (setup.py), so every install serves them.
_HERE = Path(__file__).resolve().parent
CLIENT_DIR = _HERE / "client" if (_HERE / "client").is_dir() else _HERE.parent / "client"
TOKEN_ENV = "AVATAR_TOKEN"
AVATARS_DIR_ENV = "AVATAR_AVATARS_DIR"
ORIGINS_ENV = "AVATAR_ALLOWED_ORIGINS"  # comma-separated origins allowed besides the server's own
# Messages up to this many times the encoded upload limit are read, so an oversized upload is
# answered with image_too_large; a larger one closes the socket (1009) unread.
MESSAGE_SIZE_FACTOR = 4


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    profile: str = DEFAULT_PROFILE
    device: str = "cpu"
    weights: str | None = None
    size: int | None = None  # portrait profiles: the face crop's side (None: the profile's)
    output_mode: str = "crop"  # portrait profiles: "crop" or "photo" (the whole photo, the face pasted back)
    max_sessions: int = 2
    max_viewers: int = 4  # WHEP viewers of one WHIP session (each one encodes its own stream)
    token: str | None = None  # shared secret; None = open
    # Origins a page may call from besides the server's own (its scheme on its bound address, see
    # streaming/origins.py); a request without an Origin header (not a browser) is allowed.
    allowed_origins: tuple[str, ...] = ()
    ice_servers: tuple[dict, ...] = ()  # STUN/TURN, as RTCIceServer dicts (streaming/ice.py)
    # HTTPS/WSS: a PEM certificate (chain) and its key (None: the key is in the certificate's file).
    tls_cert: str | None = None
    tls_key: str | None = None
    static_dir: Path = CLIENT_DIR
    avatars_dir: Path | None = None  # extra server-side avatar images (*.png, *.jpg)
    max_upload_bytes: int = 2 * 1024 * 1024
    max_image_side: int = 2048
    signaling_timeout_s: float = 10.0  # from websocket open to a connected call
    # Websocket keep-alive: a caller that vanishes silently (no FIN, no pongs) is noticed within
    # interval + timeout and its slot freed at once. (The price: a pong that waits behind the
    # caller's own upload for longer than the timeout ends the call too.)
    ping_interval_s: float = 0.25
    ping_timeout_s: float = 1.0
    # A peer connection (caller, WHIP publisher, WHEP viewer) from which nothing has arrived for this
    # long is taken as gone and ended (streaming/liveness.py), though a caller's websocket may live
    # on; None: only ICE consent (about 30 s) ends it. A live peer sends a packet at least every 1.5 s.
    media_timeout_s: float | None = 4.0
    stats_interval_s: float = 1.0
    # A "degraded" message when more than this share of the frames sent in a stats interval were repeats.
    degraded_repeat_share: float = 0.1
    # Output delay = the engine's window latency + this. None: measured at start-up (streaming/calibrate.py).
    compute_allowance_s: float | None = None
    # aiortc holds 4 incoming audio packets (80 ms) for reordering before decoding; 1 is enough on a
    # LAN and saves 60 ms of latency. None keeps aiortc's own.
    audio_receive_prefetch: int | None = 1
    # Outputs (streaming/outputs.py): every call pushed to this RTMP URL ("{call}": the call id) and
    # recorded into this directory as <call id>.mp4; a caller may name its own RTMP URL in the offer
    # only if it starts with one of rtmp_allow (the server connects out to it).
    rtmp_url: str | None = None
    record_dir: Path | None = None
    rtmp_allow: tuple[str, ...] = ()
    stamp_frames: bool = False  # paint each frame's index into its pixels (tests and the benchmark)
    seed: int = 0

    @property
    def max_message_bytes(self) -> int:
        # An upload arrives base64-encoded (4/3 of its bytes) inside a JSON message.
        return MESSAGE_SIZE_FACTOR * (self.max_upload_bytes * 4 // 3) + 64 * 1024

    @classmethod
    def from_args(cls, args) -> "ServerConfig":
        token = getattr(args, "token", None) or os.environ.get(TOKEN_ENV) or None
        avatars = getattr(args, "avatars", None) or os.environ.get(AVATARS_DIR_ENV)
        cfg = cls(
            host=getattr(args, "host", "127.0.0.1"),
            port=int(getattr(args, "port", 8080)),
            profile=getattr(args, "profile", DEFAULT_PROFILE),
            device=getattr(args, "device", "cpu") or "cpu",
            weights=getattr(args, "weights", None),
            size=getattr(args, "size", None),
            output_mode=getattr(args, "output_mode", "crop"),
            max_sessions=int(getattr(args, "max_sessions", 2)),
            token=token,
            avatars_dir=Path(avatars) if avatars else None,
            allowed_origins=tuple(o.strip() for o in os.environ.get(ORIGINS_ENV, "").split(",") if o.strip()),
            ice_servers=ice_servers_from(getattr(args, "ice_server", None), os.environ.get(ICE_ENV)),
            tls_cert=getattr(args, "tls_cert", None),
            tls_key=getattr(args, "tls_key", None),
            rtmp_url=getattr(args, "rtmp_url", None),
            record_dir=Path(args.record) if getattr(args, "record", None) else None,
            rtmp_allow=tuple(getattr(args, "rtmp_allow", None) or ()),
        )
        if cfg.tls_key and not cfg.tls_cert:
            raise ValueError("--tls-key needs --tls-cert")
        if cfg.max_sessions < 1:
            raise ValueError("--max-sessions must be at least 1")
        if not 0 <= cfg.port <= 65535:
            raise ValueError(f"--port must be 0-65535, not {cfg.port}")
        for url in (cfg.rtmp_url, *cfg.rtmp_allow):
            if url is not None and not is_stream_url(url):
                raise ValueError(f"an RTMP URL starts rtmp:// or rtmps://, not {url!r}")
        if cfg.record_dir is not None:
            cfg.record_dir.mkdir(parents=True, exist_ok=True)  # fails here, not in the first call
        return cfg
