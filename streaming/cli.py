"""The `avatar` command: the engine's commands (render, bench, eval) and `serve`.

It sits above every layer, so it is the one module allowed to import them all (`avatar.cli` builds
the engine's part of the parser and never imports the transport)."""

from __future__ import annotations

import argparse
import sys

from avatar import cli as engine_cli

from .config import ServerConfig


def cmd_serve(args) -> int:
    from .server import serve_main

    return serve_main(args) or 0


def add_serve(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser("serve", help="run the WebRTC server with the demo page")
    serve.add_argument("--host", default=ServerConfig.host)
    serve.add_argument("--port", type=int, default=ServerConfig.port)
    serve.add_argument("--max-sessions", type=int, default=ServerConfig.max_sessions)
    serve.add_argument("--token", help="shared secret clients must send (or AVATAR_TOKEN)")
    serve.add_argument("--ice-server", action="append", metavar="URL",
                       help="STUN/TURN server for the server and its clients, repeatable: stun:HOST[:PORT] or "
                            "turn:USER:PASSWORD@HOST[:PORT][?transport=udp|tcp] (or AVATAR_ICE_SERVERS)")
    serve.add_argument("--tls-cert", metavar="PEM", help="serve HTTPS/WSS with this certificate (chain); browsers "
                       "give a page the microphone only on https:// or on localhost")
    serve.add_argument("--tls-key", metavar="PEM", help="the certificate's private key (if not in --tls-cert's file)")
    serve.add_argument("--rtmp-url", metavar="URL",
                       help="push every call's avatar and voice to this RTMP URL (H.264 + AAC in FLV); "
                            "{call} in it becomes the call id")
    serve.add_argument("--record", metavar="DIR", help="record every call to DIR/<call id>.mp4")
    serve.add_argument("--rtmp-allow", action="append", metavar="PREFIX",
                       help="let callers name their own RTMP URL (offer option 'rtmp') if it starts with PREFIX; "
                            "repeatable")
    engine_cli.add_model_args(serve)
    engine_cli.add_output_mode_arg(serve)
    serve.set_defaults(func=cmd_serve)


def build_parser() -> argparse.ArgumentParser:
    return engine_cli.build_parser(add_serve)


def main(argv: list[str] | None = None) -> int:
    return engine_cli.main(argv, build_parser())


if __name__ == "__main__":
    sys.exit(main())
