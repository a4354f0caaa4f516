"""The JS client's own tests (streaming/client/test/, node's built-in runner), run from pytest so that
README's one test command covers them too."""

import shutil
import subprocess

import pytest

from streaming.config import CLIENT_DIR

NODE = shutil.which("node")


@pytest.mark.skipif(NODE is None, reason="needs node (apt-get install nodejs)")
def test_js_client_passes_its_node_tests():
    tests = sorted(str(p) for p in (CLIENT_DIR / "test").glob("*.test.js"))
    assert tests
    run = subprocess.run([NODE, "--test", *tests], cwd=CLIENT_DIR, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "# fail 0" in run.stdout
