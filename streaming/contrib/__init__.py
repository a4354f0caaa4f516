"""Helpers beside the transport, not part of it: a Python caller (`pyclient`) and the frame-index
stamp (`stamp`), used by the tests, the benchmarks and apps that drive an avatar from Python."""
