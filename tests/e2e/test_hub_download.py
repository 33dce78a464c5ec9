"""The download path, against a local server that answers as the Hugging Face hub does
(`/api/models/ORG/NAME/tree/main` lists a repository; `HEAD`/`GET /ORG/NAME/resolve/main/FILE` give a
file's commit, ETag and size and serve it, with `Range`), reached through HF_ENDPOINT in a fresh
HF_HOME. The repository holds the demo model as a real split GGUF (two files, written here with the
`gguf` package from the single file), so llama.cpp loads a split model.

Proven: a server started with `--model org/repo:QUANT` downloads both splits and answers, logging
its progress as lines (its log is not a terminal); `pull` killed mid-file resumes where it stopped
(a `Range` request) and ends with the exact bytes; an unknown repository is one clear line.
Not proven here: the hub's Xet transfer (a server that sends no `X-Xet-Hash` gets plain HTTP), auth
against a gated repository, and the terminal progress bar (huggingface_hub's own)."""

import hashlib
import http.server
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from helpers import ROOT, free_port

from pure_model_api.engine.loading import find_demo_gguf

REPO, REVISION = "someone/SmolLM2-135M-Instruct-GGUF", "89abcdef0123456789abcdef0123456789abcdef"
CHUNK = 1 << 20


def split_demo_gguf(target: Path) -> list[Path]:
    """The demo GGUF rewritten as two split files (`-0000N-of-00002.gguf`), as llama.cpp's gguf-split
    writes them: the metadata in the first, the tensors shared out, `split.*` keys in each."""
    import gguf

    reader = gguf.GGUFReader(find_demo_gguf())
    arch = reader.fields[gguf.Keys.General.ARCHITECTURE].contents()
    writer = gguf.GGUFWriter(target / "smollm2-135m-instruct-q4_1.gguf", arch,
                             split_max_tensors=(len(reader.tensors) + 1) // 2)
    for field in reader.fields.values():
        if field.name != gguf.Keys.General.ARCHITECTURE and not field.name.startswith("GGUF."):
            kind = field.types[0]
            writer.add_key_value(field.name, field.contents(), kind,
                                 sub_type=field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None)
    for tensor in reader.tensors:
        data = tensor.data
        writer.add_tensor_info(tensor.name, data.shape, data.dtype, data.nbytes, tensor.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for tensor in reader.tensors:
        writer.write_tensor_data(tensor.data, tensor_endianess=reader.endianess)
    writer.close()
    return sorted(target.glob("*-of-00002.gguf"))


class Hub(http.server.ThreadingHTTPServer):
    """The hub's listing and resolve endpoints over one repository's files; `pause` seconds after each
    MiB sent makes a download slow enough to interrupt; `drop` (a file, a byte count) ends the next GET
of that file there, as a lost connection does; `ranges` records each GET's Range header."""

    def __init__(self, files: list[Path]):
        super().__init__(("127.0.0.1", 0), HubHandler)
        self.files = {path.name: path for path in files}
        self.etags = {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in files}
        self.pause, self.ranges, self.drop = 0.0, [], None
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


class HubHandler(http.server.BaseHTTPRequestHandler):
    server: Hub

    def log_message(self, *args):
        pass

    def do_HEAD(self):
        self.do_GET(body=False)

    def do_GET(self, body: bool = True):
        path = self.path.split("?")[0]
        if path == f"/api/models/{REPO}/tree/main":
            listing = [{"type": "file", "path": name, "size": file.stat().st_size, "oid": self.server.etags[name][:40],
                        "lfs": {"oid": self.server.etags[name], "size": file.stat().st_size, "pointerSize": 134}}
                       for name, file in self.server.files.items()]
            return self.reply(200, json.dumps(listing).encode(), {"Content-Type": "application/json"}, body)
        resolved = re.fullmatch(rf"/{REPO}/resolve/(?:main|{REVISION})/(.+)", path)
        if not resolved or resolved.group(1) not in self.server.files:
            return self.reply(404, b'{"error": "Repository not found"}', {"X-Error-Code": "RepositoryNotFound"}, body)
        self.send_file(resolved.group(1), body)

    def send_file(self, name: str, body: bool):
        data = self.server.files[name].read_bytes()
        start = int(re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", "bytes=0-")).group(1))
        if body:
            self.server.ranges.append((name, self.headers.get("Range")))
        headers = {"X-Repo-Commit": REVISION, "ETag": f'"{self.server.etags[name]}"', "Accept-Ranges": "bytes"}
        if start:
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        self.send_response(206 if start else 200)
        for key, value in {**headers, "Content-Length": str(len(data) - start)}.items():
            self.send_header(key, value)
        self.end_headers()
        end = len(data) if body else start
        if body and self.server.drop and self.server.drop[0] == name:  # the connection lost part way
            end, self.server.drop = self.server.drop[1], None
        for offset in range(start, end, CHUNK):
            self.wfile.write(data[offset:min(offset + CHUNK, end)])
            time.sleep(self.server.pause)

    def reply(self, status: int, content: bytes, headers: dict, body: bool):
        self.send_response(status)
        for key, value in {**headers, "Content-Length": str(len(content))}.items():
            self.send_header(key, value)
        self.end_headers()
        if body:
            self.wfile.write(content)


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    server = Hub(split_demo_gguf(tmp_path_factory.mktemp("repository")))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


@pytest.fixture
def online(hub, tmp_path) -> dict:
    """An empty HF_HOME and the local hub as HF_ENDPOINT, for a child process."""
    hub.pause, hub.ranges, hub.drop = 0.0, [], None
    env = {key: value for key, value in os.environ.items() if key != "HF_HUB_OFFLINE"}
    return {**env, "HF_HOME": str(tmp_path / "hf-home"), "HF_ENDPOINT": hub.url}


def pull(env: dict, model: str = f"{REPO}:Q4_1", **options) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "pure_model_api.py"), "pull", model], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **options)


def test_a_hub_name_is_downloaded_with_progress_lines_and_its_split_gguf_served(hub, online, tmp_path):
    port, log = free_port(), tmp_path / "server.log"
    with open(log, "wb") as output:
        process = subprocess.Popen([sys.executable, str(ROOT / "pure_model_api.py"), "--model", f"{REPO}:q4_1",
                                    "--port", str(port), "--db", str(tmp_path / "c.sqlite3")], cwd=ROOT, env=online,
                                   stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while not _healthy(url):
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        assert httpx.get(url + "/status").json()["engine"] == "llama.cpp"
        reply = httpx.post(url + "/chat", timeout=120, json={"message": "What is 2 + 2?", "temperature": 0,
                                                                "max_tokens": 16}).json()
        assert reply["status"] == "success" and "4" in reply["response"]
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
    text = log.read_text()
    for name in hub.files:  # a line at each tenth a read crosses (huggingface_hub reads 10 MB at a time)
        assert len(re.findall(rf"downloading {name}: [1-9]0% of", text)) >= 2, text[-3000:]
        assert f"downloading {name}: 100% of {hub.files[name].stat().st_size / 1e6:.1f} MB" in text
    assert sorted(name for name, _ in hub.ranges) == sorted(hub.files)  # each file fetched once


def test_a_connection_dropped_mid_file_resumes_where_it_stopped_and_ends_with_the_exact_bytes(hub, online):
    first = min(hub.files)
    hub.drop = (first, 20 * CHUNK)  # the first GET of the first file ends after 20 MiB of its 65 MB
    out, err = pull(online).communicate(timeout=120)
    assert [(name, r) for name, r in hub.ranges if name == first] == [(first, None), (first, f"bytes={20 * CHUNK}-")]
    paths = [Path(line) for line in out.split()]
    assert [p.name for p in paths] == sorted(hub.files), err
    for path in paths:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == hub.etags[path.name]


def test_a_pull_killed_mid_file_leaves_nothing_taken_for_the_model_and_the_next_ends_whole(hub, online, tmp_path):
    """huggingface_hub (since 1.x) downloads into a file named for its process and does not reuse it
    in the next: a killed download starts again from 0, and its part is never mistaken for the file."""
    hub.pause = 0.02
    interrupted = pull(online)
    blobs = tmp_path / "hf-home" / "hub" / f"models--{REPO.replace('/', '--')}" / "blobs"
    deadline = time.monotonic() + 60
    while not [p for p in blobs.glob("*.incomplete") if p.stat().st_size >= 8 * CHUNK]:
        assert interrupted.poll() is None and time.monotonic() < deadline, interrupted.communicate()
        time.sleep(0.05)
    interrupted.send_signal(signal.SIGKILL)
    interrupted.wait()
    hub.pause = 0.0
    out, err = pull(online).communicate(timeout=120)
    for path in (Path(line) for line in out.split()):
        assert hashlib.sha256(path.read_bytes()).hexdigest() == hub.etags[path.name], err


def test_a_repository_the_hub_does_not_have_is_one_clear_line(online):
    out, err = pull(online, "someone/Nothing-GGUF:Q4_K_M").communicate(timeout=60)
    assert "someone/Nothing-GGUF is not on the Hugging Face hub" in err and "Traceback" not in err, err


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/health").status_code == 200
    except httpx.TransportError:
        return False
