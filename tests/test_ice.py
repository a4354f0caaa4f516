"""STUN/TURN: --ice-server / AVATAR_ICE_SERVERS parsed into RTCIceServer dicts, used by the server's
own peer and handed to clients in "ready"; a real call through a real TURN server (coturn)."""

import argparse

import pytest

from streaming.config import ServerConfig
from streaming.ice import ICE_ENV, ice_servers_from, parse_ice_server
from streaming.contrib.pyclient import CallClient
from streaming.server import AvatarServer


def test_urls_and_credentials_parse_into_rtc_ice_server_dicts():
    assert parse_ice_server("stun:stun.example.org") == {"urls": ["stun:stun.example.org"]}
    assert parse_ice_server(" turn:al%40ice:p%3Ass@10.0.0.1:3479?transport=tcp ") == {
        "urls": ["turn:10.0.0.1:3479?transport=tcp"], "username": "al@ice", "credential": "p:ss"}
    assert parse_ice_server("turns:u:p@turn.example.org")["urls"] == ["turns:turn.example.org"]


@pytest.mark.parametrize("text, says", [
    ("turn:turn.example.org", "needs a user and password"),
    ("turn:onlyuser@turn.example.org", "USER:PASSWORD@"),
    ("http://u:hunter2@turn.example.org", "not a STUN/TURN URL"),
    ("turn:u:hunter2@turn.example.org:99999", "not a STUN/TURN URL"),
    ("stun", "not a STUN/TURN URL"),
])
def test_bad_urls_are_clear_errors_that_never_repeat_the_password(text, says):
    with pytest.raises(ValueError) as error:
        parse_ice_server(text)
    assert says in str(error.value) and "hunter2" not in str(error.value)


def test_flags_come_before_the_environment(monkeypatch):
    assert ice_servers_from(None, "stun:a.example, stun:b.example:3479  stun:c.example") == (
        {"urls": ["stun:a.example"]}, {"urls": ["stun:b.example:3479"]}, {"urls": ["stun:c.example"]})
    monkeypatch.setenv(ICE_ENV, "stun:env.example")
    assert ServerConfig.from_args(argparse.Namespace()).ice_servers == ({"urls": ["stun:env.example"]},)
    flagged = ServerConfig.from_args(argparse.Namespace(ice_server=["stun:flag.example"]))
    assert flagged.ice_servers == ({"urls": ["stun:flag.example"]},)
    monkeypatch.delenv(ICE_ENV)
    assert ServerConfig.from_args(argparse.Namespace()).ice_servers == ()


async def test_a_call_relays_through_a_real_turn_server(turn_server, tiny_profile, speech_hello):
    turn = parse_ice_server(turn_server)
    server = await AvatarServer(ServerConfig(port=0, compute_allowance_s=0.2, ice_servers=(turn,)),
                                tiny_profile).start()
    client = await CallClient.open(f"ws://127.0.0.1:{server.port}/ws", speech_hello, 16000)
    try:
        assert client.ready["ice_servers"] == [turn]  # handed to the client, credentials included
        # Both peers asked coturn for a relayed address: the server's (answer) and the client's (offer).
        assert "typ relay" in client.answer["sdp"] and "typ relay" in client.pc.localDescription.sdp
        stats = await client.wait_for("stats", timeout=15)
        assert stats["frames_sent"] > 0
    finally:
        await client.close()
        await server.stop()
