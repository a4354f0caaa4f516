"""Fuzz the live server (issue 11, harness d): >= 1000 seeded hostile inputs, each of which must get a
clear answer: an error message with a documented code (never `internal`), an HTTP status below 500,
or, for bytes that are not HTTP at all, a closed connection; and the server's log must hold no
traceback. Starts `avatar -v serve --profile tiny-random` on a loopback port from a checkout, runs
the cases (benchmarks/fuzz_cases.py), and prints the counts:

    python benchmarks/fuzz_server.py [--cases 1000] [--seed 0] [--root CHECKOUT] [--json out.json]

--root runs another checkout's server (the cases and this runner stay the same), e.g. main's code
from `git worktree add /tmp/base 168f5b7`. The exit status is 1 when any case failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.fuzz_cases import ERROR_CODES, TOKEN, Case, make_cases, offer  # noqa: E402

REPLY_TIMEOUT_S = 20.0
HTTP_TIMEOUT_S = 5.0
REPLIES = {"error", "answer", "avatar", "prompt", "pong"}


def clear(outcome: str) -> bool:
    """An answer a client can act on."""
    kind, _, detail = outcome.partition(":")
    if kind == "error":
        return detail in ERROR_CODES
    if kind == "http":
        return int(detail) < 500
    if kind == "ws_closed":
        return detail in ("1000", "1007", "1008")  # bye, invalid UTF-8, signaling timeout
    return outcome in ("answer", "avatar_ok", "prompt_ok", "accepted", "closed")


async def http_case(port: int, payload: bytes) -> str:
    payload = payload.replace(b"{host}", f"127.0.0.1:{port}".encode()).replace(b"{port}", str(port).encode())
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        await writer.drain()
        if not payload.endswith(b"\r\n\r\n") and writer.can_write_eof():
            writer.write_eof()  # an incomplete request: the server sees it end
        line = await asyncio.wait_for(reader.readline(), HTTP_TIMEOUT_S)
    except asyncio.TimeoutError:
        return "no_reply"
    except ConnectionError:
        return "closed"
    finally:
        writer.close()
    match = re.match(rb"HTTP/1\.[01] (\d{3}) ", line)  # (1.0: an answer to a request too garbled to have a version)
    return f"http:{int(match.group(1))}" if match else ("closed" if not line else "garbled")


class Signaling:
    """One websocket to the server, reopened whenever a case ends it; `in_call` sockets first get a
    call (a good offer, answered)."""

    def __init__(self, port: int):
        self.url = f"ws://127.0.0.1:{port}/ws?token={TOKEN}"
        self.ws = None
        self.has_call = False

    async def open(self, with_call: bool) -> None:
        await self.close()
        for _ in range(50):  # a slot may still be held by the previous socket for a moment
            try:
                self.ws = await connect(self.url, max_size=None, close_timeout=1.0)
                break
            except InvalidStatus:
                await asyncio.sleep(0.2)
        first = json.loads(await asyncio.wait_for(self.ws.recv(), REPLY_TIMEOUT_S))
        if first.get("type") != "ready":  # busy: try again shortly
            await asyncio.sleep(0.5)
            return await self.open(with_call)
        self.has_call = False
        if with_call:
            if await self.exchange(offer()) != "answer":
                raise RuntimeError("the server did not answer a good offer")
            self.has_call = True

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
            self.ws = None

    async def exchange(self, payload: str | bytes) -> str:
        """Send one message, then a ping: the first reply before the pong is the outcome."""
        try:
            if isinstance(payload, str):
                try:
                    await self.ws.send(payload)
                except UnicodeEncodeError:  # a lone surrogate: send the invalid UTF-8 as text anyway
                    await self.ws.send(payload.encode("utf-8", "surrogatepass"), text=True)
            else:
                await self.ws.send(payload)
            await self.ws.send('{"type": "ping"}')
            while True:
                msg = json.loads(await asyncio.wait_for(self.ws.recv(), REPLY_TIMEOUT_S))
                kind = msg.get("type")
                if kind not in REPLIES:
                    continue
                if kind == "pong":
                    return "accepted"
                if kind == "error":
                    outcome = f"error:{msg.get('code')}"
                else:
                    outcome = {"answer": "answer", "avatar": "avatar_ok", "prompt": "prompt_ok"}[kind]
                await self._until_pong()
                return outcome
        except (ConnectionClosed, AttributeError):  # (AttributeError: websockets' client, sending on a
            # socket the server has just closed)
            try:
                await asyncio.wait_for(self.ws.wait_closed(), REPLY_TIMEOUT_S)
            except asyncio.TimeoutError:
                pass
            code, self.ws = self.ws.close_code, None
            return f"ws_closed:{code}"
        except asyncio.TimeoutError:
            await self.close()
            return "no_reply"

    async def _until_pong(self) -> None:
        while json.loads(await asyncio.wait_for(self.ws.recv(), REPLY_TIMEOUT_S)).get("type") != "pong":
            pass


async def run_cases(port: int, cases: list[Case], budget_s: float | None = None) -> list[tuple[Case, str]]:
    """Each case's outcome. Sockets are reopened as cases end them; in-call cases share a call until
    it nears the signaling timeout."""
    results = []
    signaling = Signaling(port)
    call_started = 0.0
    started = time.monotonic()
    try:
        for case in cases:
            if budget_s is not None and time.monotonic() - started > budget_s:
                break
            if case.kind == "http":
                results.append((case, await http_case(port, case.payload)))
                continue
            want_call = case.kind == "in_call"
            if signaling.ws is None or signaling.has_call != want_call or (
                    want_call and time.monotonic() - call_started > 5.0):
                await signaling.open(want_call)
                call_started = time.monotonic()
            outcome = await signaling.exchange(case.payload)
            if outcome == "answer" or outcome.startswith("ws_closed"):
                await signaling.close()  # the next case starts on a fresh socket
            results.append((case, outcome))
    finally:
        await signaling.close()
    return results


def failures(results: list[tuple[Case, str]]) -> list[tuple[Case, str]]:
    return [(c, o) for c, o in results if not clear(o) or (c.expect and o not in c.expect)]


def summary(results, log_text: str) -> dict:
    failed = failures(results)
    return {
        "cases": len(results),
        "by_kind": dict(Counter(c.kind for c, _ in results)),
        "outcomes": dict(Counter(o for _, o in results).most_common()),
        "internal": sum(o == "error:internal" for _, o in results),
        "http_5xx": sum(o.startswith("http:5") for _, o in results),
        "no_reply": sum(o == "no_reply" for _, o in results),
        "unclear": sum(not clear(o) for _, o in results),
        "wrong_answer": sum(bool(c.expect) and clear(o) and o not in c.expect for c, o in results),
        "tracebacks_in_log": log_text.count("Traceback (most recent call last)"),
        "error_lines_in_log": sum(" ERROR " in line for line in log_text.splitlines()),
        "failed": [f"{c.source}: {o} (want {'/'.join(c.expect) or 'a clear answer'})" for c, o in failed][:60],
    }


def serve_command(root: Path) -> list[str]:
    cli = "streaming.cli" if (root / "streaming" / "cli.py").exists() else "avatar.cli"
    return [sys.executable, "-m", cli, "-v", "serve", "--profile", "tiny-random", "--port", "0",
            "--max-sessions", "4", "--token", TOKEN]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout whose server is fuzzed")
    parser.add_argument("--json", help="also write the counts to this file")
    parser.add_argument("--log", help="also write the server's log to this file")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(args.root.resolve()), "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryFile("w+") as log_file:
        server = subprocess.Popen(serve_command(args.root), cwd=args.root, env=env, stdout=subprocess.PIPE,
                                  stderr=log_file, text=True)
        try:
            line = server.stdout.readline()
            port = int(re.search(r":(\d+)/demo/", line).group(1))
            cases = make_cases(args.cases, args.seed)
            started = time.monotonic()
            results = asyncio.run(run_cases(port, cases))
            seconds = time.monotonic() - started
        finally:
            server.terminate()
            server.wait(30)
        log_file.seek(0)
        log_text = log_file.read()
    if args.log:
        Path(args.log).write_text(log_text)
    report = {"root": str(args.root), "seed": args.seed, "seconds": round(seconds, 1), **summary(results, log_text)}
    print(json.dumps(report, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    failed = report["internal"] + report["http_5xx"] + report["unclear"] + report["wrong_answer"]
    return 1 if failed or report["tracebacks_in_log"] else 0


if __name__ == "__main__":
    sys.exit(main())
