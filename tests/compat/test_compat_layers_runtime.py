"""Layers at run time, seen from inside the sandbox and from the host: bin/ and lib/, the per-worker
cache of extracted layers, plaintext never reaching the data dir, and what updates and deletes do.

The cache is observed from outside: a layer version's extracted tree lives on the worker's scratch
tmpfs (``<scratch>/code/<hash>``, see lamina.worker.scratch and lamina.worker.code) and every env
of every function that uses it hard-links the same files into its /opt. So "not extracted again"
shows as: still exactly one tree holding the layer's files, the same inodes and mtimes, and the
inode the second function sees at /opt being the one in that tree.
"""

from __future__ import annotations

import ctypes
import hashlib
import io
import json
import os
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_compat_support import Functions, Server, client_for, make_zip, wait_updated

pytestmark = pytest.mark.root

SCRATCH_BASES = (Path("/run/lamina"), Path("/dev/shm"))


# -- helpers ---------------------------------------------------------------------------------


@pytest.fixture
def layers(lam: Any) -> Iterator[Callable[..., dict[str, Any]]]:
    """Publishes layers under fresh names; deletes every version at teardown."""
    names: list[str] = []

    def publish(files: dict[str, tuple[bytes, int]]) -> dict[str, Any]:
        name = f"rt-layer-{uuid.uuid4().hex[:12]}"
        names.append(name)
        result: dict[str, Any] = lam.publish_layer_version(
            LayerName=name, Content={"ZipFile": layer_zip(files)})
        return result

    yield publish
    for name in names:
        for version in lam.list_layer_versions(LayerName=name).get("LayerVersions", []):
            lam.delete_layer_version(LayerName=name, VersionNumber=version["Version"])


def layer_zip(files: dict[str, tuple[bytes, int]]) -> bytes:
    """A layer zip, stored (not deflated) so the files' bytes appear verbatim in it: a plaintext
    copy of the zip anywhere would show up in a byte search for their content."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as archive:
        for name, (data, mode) in files.items():
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.external_attr = mode << 16
            archive.writestr(info, data)
    return buf.getvalue()


def invoke(lam: Any, name: str, event: Any = None, qualifier: str | None = None) -> Any:
    params: dict[str, Any] = {"FunctionName": name, "Payload": json.dumps(event or {}).encode()}
    if qualifier:
        params["Qualifier"] = qualifier
    response = lam.invoke(**params)
    body = json.loads(response["Payload"].read())
    assert "FunctionError" not in response, body
    return body


def scratch_code_dir(data_dir: Path) -> Path:
    """The worker's code cache, where lamina.worker.scratch puts it for this data dir."""
    instance = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:12]
    for candidate in (SCRATCH_BASES[0] / instance / "code", SCRATCH_BASES[1] / f"lamina-{instance}" / "code"):
        if candidate.is_dir():
            return candidate
    raise AssertionError(f"no scratch code dir for {data_dir} under {SCRATCH_BASES}")


def trees_holding(code_dir: Path, relative: str) -> list[Path]:
    """Extracted trees in the cache (staging dirs excluded) that contain ``relative``."""
    return sorted(p for p in code_dir.iterdir()
                  if not p.name.endswith(".tmp") and (p / relative).is_file())


def fs_type(path: Path) -> str:
    """The filesystem type of the mount ``path`` is on, from /proc/self/mountinfo."""
    best, kind = "", ""
    target = str(path.resolve())
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            point = fields[4].encode().decode("unicode_escape")
            if (target == point or target.startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
                best, kind = point, fields[fields.index("-") + 1]
    return kind


def files_containing(root: Path, needle: bytes) -> list[Path]:
    """Every regular file under ``root`` whose bytes contain ``needle``."""
    found = []
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = Path(dirpath) / name
            if path.is_symlink() or not path.is_file():
                continue
            try:
                if needle in path.read_bytes():
                    found.append(path)
            except OSError:
                continue
    return found


# -- bin/ and lib/ ---------------------------------------------------------------------------

BIN_LIB_PROBE = '''
import ctypes, os, shutil, subprocess, sys

def handler(event, context):
    ld_dirs = os.environ.get("LD_LIBRARY_PATH", "").split(":")
    found = [d for d in ld_dirs if d and os.path.isfile(os.path.join(d, "liblaminaprobe.so"))]
    out = {
        "which": shutil.which("laminatool"),
        "tool": subprocess.run(["laminatool", "arg1"], capture_output=True, text=True).stdout,
        "lib_dirs": found,
        "lib_text": open(os.path.join(found[0], "laminaprobe.txt")).read() if found else None,
        "child_dlopen": subprocess.run(
            [sys.executable, "-c", "import ctypes; print(ctypes.CDLL('liblaminaprobe.so').zlibVersion() != 0)"],
            capture_output=True, text=True).stdout.strip(),
    }
    try:
        ctypes.CDLL("liblaminaprobe.so")
        with open("/proc/self/maps") as maps:
            out["dlopen"] = [l.split()[-1] for l in maps if "liblaminaprobe" in l][:1]
    except OSError as exc:
        out["dlopen"] = str(exc)
    return out
'''

TOOL = b"#!/bin/sh\necho \"tool-ran $1 from $0\"\n"


def _real_shared_library() -> bytes:
    """The bytes of a real ELF shared library of this host (zlib), to ship as a layer's lib/."""
    ctypes.CDLL("libz.so.1")
    with open("/proc/self/maps") as maps:
        paths = {line.split()[-1] for line in maps if "libz.so" in line and line.split()[-1].startswith("/")}
    if not paths:
        pytest.fail("libz.so.1 is not mapped after loading it")
    return Path(sorted(paths)[0]).read_bytes()


@pytest.fixture(scope="module")
def bin_lib_layer() -> dict[str, tuple[bytes, int]]:
    return {
        "bin/laminatool": (TOOL, 0o755),
        "lib/liblaminaprobe.so": (_real_shared_library(), 0o755),
        "lib/laminaprobe.txt": (b"lib-content", 0o644),
    }


def test_layer_bin_is_on_path_and_runs(lam: Any, functions: Functions, fn_name: str,
                                       layers: Callable[..., dict[str, Any]],
                                       bin_lib_layer: dict[str, tuple[bytes, int]]) -> None:
    layer = layers(bin_lib_layer)
    functions.create(fn_name, code=make_zip({"index.py": BIN_LIB_PROBE}), Timeout=15,
                     Layers=[layer["LayerVersionArn"]])
    result = invoke(lam, fn_name)
    assert result["which"] == "/opt/bin/laminatool"
    assert result["tool"] == "tool-ran arg1 from /opt/bin/laminatool\n"


def test_layer_lib_is_found_through_ld_library_path(lam: Any, functions: Functions, fn_name: str,
                                                    layers: Callable[..., dict[str, Any]],
                                                    bin_lib_layer: dict[str, tuple[bytes, int]]) -> None:
    layer = layers(bin_lib_layer)
    functions.create(fn_name, code=make_zip({"index.py": BIN_LIB_PROBE}), Timeout=15,
                     Layers=[layer["LayerVersionArn"]])
    result = invoke(lam, fn_name)
    assert result["lib_dirs"] == ["/opt/lib"] and result["lib_text"] == "lib-content"
    # A process started by the handler resolves a bare library name through /opt/lib.
    assert result["child_dlopen"] == "True"


def test_handler_process_dlopens_a_layer_library(lam: Any, functions: Functions, fn_name: str,
                                                 layers: Callable[..., dict[str, Any]],
                                                 bin_lib_layer: dict[str, tuple[bytes, int]]) -> None:
    layer = layers(bin_lib_layer)
    functions.create(fn_name, code=make_zip({"index.py": BIN_LIB_PROBE}), Timeout=15,
                     Layers=[layer["LayerVersionArn"]])
    result = invoke(lam, fn_name)
    assert result["dlopen"] == ["/opt/lib/liblaminaprobe.so"], result["dlopen"]


# -- the cache of extracted layers -------------------------------------------------------------

INODE_PROBE = '''
import os

def handler(event, context):
    st = os.stat("/opt/" + event["path"])
    return {"ino": st.st_ino, "nlink": st.st_nlink, "text": open("/opt/" + event["path"]).read()}
'''


def test_second_function_reuses_the_extracted_layer(lam: Any, server: Server, functions: Functions,
                                                    fn_name: str,
                                                    layers: Callable[..., dict[str, Any]]) -> None:
    relative = f"cache-{uuid.uuid4().hex}.txt"
    layer = layers({relative: (b"cached", 0o644), "bin/other": (b"#!/bin/sh\n", 0o755)})
    code = make_zip({"index.py": INODE_PROBE})
    code_dir = scratch_code_dir(server.data_dir)
    assert trees_holding(code_dir, relative) == []  # published, never used: nothing extracted

    functions.create(fn_name, code=code, Layers=[layer["LayerVersionArn"]])
    first = invoke(lam, fn_name, {"path": relative})
    trees = trees_holding(code_dir, relative)
    assert len(trees) == 1, trees
    tree = trees[0]
    assert fs_type(tree) == "tmpfs", "extracted layers must live on memory-backed storage"
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (tree, tree / relative, tree / "bin")}
    assert first["ino"] == (tree / relative).stat().st_ino and first["text"] == "cached"

    functions.create(f"{fn_name}-b", code=code, Layers=[layer["LayerVersionArn"]])
    second = invoke(lam, f"{fn_name}-b", {"path": relative})
    assert trees_holding(code_dir, relative) == [tree], "the second cold start extracted the layer again"
    after = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in before}
    assert after == before
    # Both functions' envs see the very file of the cached tree (hard links, no copy).
    assert second["ino"] == first["ino"] and second["text"] == "cached"
    assert second["nlink"] == first["nlink"] + 1


# -- no plaintext in the data dir ------------------------------------------------------------

SECRET_PROBE = '''
import hashlib

def handler(event, context):
    with open("/opt/" + event["path"], "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()
'''


def test_no_plaintext_layer_content_in_the_data_dir(lam: Any, server: Server, functions: Functions,
                                                    fn_name: str,
                                                    layers: Callable[..., dict[str, Any]]) -> None:
    marker = f"LAYER-PLAINTEXT-{uuid.uuid4().hex}".encode()
    relative = f"secret-{uuid.uuid4().hex[:8]}.txt"
    layer = layers({relative: (marker * 64, 0o644), "python/secret_mod.py": (b"S = '" + marker + b"'\n", 0o644)})
    assert files_containing(server.data_dir, marker) == []  # after publishing

    functions.create(fn_name, code=make_zip({"index.py": SECRET_PROBE}), Layers=[layer["LayerVersionArn"]])
    digest = invoke(lam, fn_name, {"path": relative})
    assert digest == hashlib.sha256(marker * 64).hexdigest()
    # The scan can fail: the extracted copy on the scratch tmpfs does hold the marker...
    assert files_containing(scratch_code_dir(server.data_dir), marker)
    # ...and nothing under the data dir does (sqlite db and its WAL included), after invoking.
    assert files_containing(server.data_dir, marker) == []


# -- updates and deletes -----------------------------------------------------------------------

WHICH_PROBE = '''
import time, uuid

ENV = uuid.uuid4().hex

def handler(event, context):
    start = open("/opt/which.txt").read()
    time.sleep(event.get("sleep", 0))
    return {"start": start, "end": open("/opt/which.txt").read(), "env": ENV}
'''


def test_update_of_layers_leaves_a_running_env_alone(lam: Any, server: Server, functions: Functions,
                                                     fn_name: str,
                                                     layers: Callable[..., dict[str, Any]]) -> None:
    one = layers({"which.txt": (b"one", 0o644)})
    two = layers({"which.txt": (b"two", 0o644)})
    functions.create(fn_name, code=make_zip({"index.py": WHICH_PROBE}), Timeout=15,
                     Layers=[one["LayerVersionArn"]])
    assert invoke(lam, fn_name)["end"] == "one"

    long_result: list[Any] = []
    other = client_for(server)  # its own connection: the long invoke holds one open
    running = threading.Thread(target=lambda: long_result.append(invoke(other, fn_name, {"sleep": 3})))
    running.start()
    time.sleep(1.0)  # let the long invoke start (in the warm env) before the update lands
    try:
        lam.update_function_configuration(FunctionName=fn_name, Layers=[two["LayerVersionArn"]])
        wait_updated(lam, fn_name)
        fresh = invoke(lam, fn_name)
        assert running.is_alive(), "the long invoke ended before the update: nothing was tested"
    finally:
        running.join(timeout=20)
    assert fresh["start"] == "two" and fresh["end"] == "two"
    assert long_result, "the long invoke did not return"
    # The env that was running keeps the layer set it started with, to its invoke's end.
    assert long_result[0]["start"] == "one" and long_result[0]["end"] == "one"
    assert long_result[0]["env"] != fresh["env"]
    assert invoke(lam, fn_name)["end"] == "two"  # and it is not reused afterwards


def test_deleted_layer_version_keeps_working(lam: Any, server_factory: Callable[..., Server],
                                             tmp_path: Path) -> None:
    """Warm, cold, through a published version, and after a restart (empty cache: the layer
    is decrypted from storage again)."""
    server = server_factory(tmp_path / "data")
    client = client_for(server)
    helper = Functions(client)
    name = f"deleted-layer-{uuid.uuid4().hex[:8]}"
    layer = client.publish_layer_version(LayerName=name,
                                         Content={"ZipFile": layer_zip({"which.txt": (b"kept", 0o644)})})
    helper.create(name, code=make_zip({"index.py": WHICH_PROBE}), Layers=[layer["LayerVersionArn"]])
    warm = invoke(client, name)
    published = client.publish_version(FunctionName=name)["Version"]

    client.delete_layer_version(LayerName=name, VersionNumber=1)
    again = invoke(client, name)
    assert again["end"] == "kept" and again["env"] == warm["env"]  # the warm env goes on
    client.update_function_configuration(FunctionName=name, MemorySize=256)  # a new env
    wait_updated(client, name)
    cold = invoke(client, name)
    assert cold["end"] == "kept" and cold["env"] != warm["env"]
    assert invoke(client, name, qualifier=published)["end"] == "kept"

    server.process.terminate()
    server.process.wait(timeout=15)
    restarted = client_for(server_factory(tmp_path / "data"))
    assert invoke(restarted, name)["end"] == "kept"
    assert invoke(restarted, name, qualifier=published)["end"] == "kept"


def test_extracted_layers_are_gone_once_the_server_stops(server_factory: Callable[..., Server],
                                                         tmp_path: Path) -> None:
    server = server_factory(tmp_path / "data")
    client = client_for(server)
    relative = f"gone-{uuid.uuid4().hex}.txt"
    layer = client.publish_layer_version(LayerName="gone",
                                         Content={"ZipFile": layer_zip({relative: (b"bye", 0o644)})})
    Functions(client).create("gone", code=make_zip({"index.py": INODE_PROBE}), Layers=[layer["LayerVersionArn"]])
    assert invoke(client, "gone", {"path": relative})["text"] == "bye"
    code_dir = scratch_code_dir(server.data_dir)
    assert trees_holding(code_dir, relative)
    server.process.terminate()  # what stop_server and service managers send
    server.process.wait(timeout=15)
    assert not code_dir.exists(), "decrypted layer content outlived the server on the scratch tmpfs"
