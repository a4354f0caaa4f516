"""Helpers beside the transport, not part of it: a Python caller (`pyclient`), the frame-index stamp
(`stamp`), used by the tests, the benchmarks and apps that drive an avatar from Python, and the avatar
as a Pipecat service (`pipecat`, with `pip install talking-avatar[pipecat]`; `tts_voice` is its
framework-free part)."""
