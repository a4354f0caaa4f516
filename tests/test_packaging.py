"""What a non-editable install gets: the wheel is built from a copy of the sources (a build in place
would write build/ and *.egg-info into the checkout), its file list and metadata are read, and a
server started from the unpacked wheel alone (no checkout on the path) serves the demo and the
client. Installing the wheel's dependencies into a fresh venv would add minutes and the network
for nothing these checks miss: an unpacked wheel is exactly what pip puts in site-packages."""

import json
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CLIENT = ROOT / "streaming" / "client"
SERVED = {"/demo/": "demo/index.html", "/demo/demo.js": "demo/demo.js", "/demo/style.css": "demo/style.css",
          "/src/index.js": "src/index.js", "/src/index.d.ts": "src/index.d.ts"}

SERVE_FROM_WHEEL = """
import asyncio, json, sys, urllib.request
import streaming
from streaming.config import ServerConfig
from streaming.server import AvatarServer

async def main():
    server = await AvatarServer(ServerConfig(port=0, compute_allowance_s=0.3)).start()
    base = f"http://127.0.0.1:{server.port}"
    def get(path):
        with urllib.request.urlopen(base + path, timeout=10) as r:
            return r.status, r.read().decode()
    try:
        pages = {path: await asyncio.to_thread(get, path) for path in json.loads(sys.argv[1])}
    finally:
        await server.stop()
    print(json.dumps({"streaming": streaming.__file__, "url": server.url, "pages": pages}))

asyncio.run(main())
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    junk = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "node_modules")
    for name in ("avatar", "models", "streaming"):
        shutil.copytree(ROOT / name, src / name, ignore=junk)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    # No build isolation: the test extra brings the build backend, so this needs no network.
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-3000:]
    [whl] = (tmp / "dist").glob("talking_avatar-*.whl")
    return whl


@pytest.mark.slow
def test_wheel_ships_the_demo_the_client_and_the_license(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for file in SERVED.values():
        assert f"streaming/client/{file}" in names
    assert "streaming/client/package.json" in names and "models/weights/tiny.safetensors" in names
    assert not any("/client/test/" in n or "node_modules" in n for n in names)  # the client's tests stay out
    dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
    assert f"{dist_info}/licenses/LICENSE" in names
    meta = Parser().parsestr(zipfile.ZipFile(wheel).read(f"{dist_info}/METADATA").decode())
    assert meta["License-Expression"] == "MIT" and meta["License-File"] == "LICENSE"


@pytest.mark.slow
def test_server_run_from_the_unpacked_wheel_serves_the_demo(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    run = subprocess.run([sys.executable, "-c", SERVE_FROM_WHEEL, json.dumps(list(SERVED))],
                         cwd=tmp_path, env={"PYTHONPATH": str(site), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert Path(result["streaming"]).is_relative_to(site)  # not the checkout
    assert result["url"].endswith("/demo/")
    for path, file in SERVED.items():
        status, body = result["pages"][path]
        assert status == 200 and body == (CLIENT / file).read_text(), path


def test_npm_package_metadata():
    package = json.loads((CLIENT / "package.json").read_text())
    assert package["license"] == "MIT" and (CLIENT / "LICENSE").read_text() == (ROOT / "LICENSE").read_text()
    assert package["engines"]["node"] and "node --test" in package["scripts"]["test"]
    for file in package["files"]:
        assert (CLIENT / file).is_file(), file
