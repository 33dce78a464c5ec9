"""Models by hub name, offline, from a Hugging Face cache laid out as huggingface_hub lays it out
(`models--org--name/{refs,blobs,snapshots}`), built here in a temporary HF_HOME: the demo GGUF under
Qwen's GGUF repository name, a config-only Qwen2.5-7B-Instruct (its config and safetensors index,
as a cache holds them once those files were fetched), and broken downloads. Real server processes,
with HF_HUB_OFFLINE=1: no hub is reached, and none could be from here.

The download path itself (progress, resume, a split GGUF fetched and served) is in
test_hub_download.py, against a local server that answers as the hub does."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from helpers import ROOT, free_port

from pure_model_api.engine import hub
from pure_model_api.engine.loading import find_demo_gguf
from pure_model_api.errors import ModelLoadError

REVISION = "0123456789abcdef0123456789abcdef01234567"
QWEN_7B_CONFIG = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 3584,
                  "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28,
                  "num_key_value_heads": 4, "max_position_embeddings": 32768, "vocab_size": 152064,
                  "torch_dtype": "bfloat16"}
QWEN_7B_INDEX = {"metadata": {"total_size": 15231233024}, "weight_map": {}}


def put(home: Path, repo: str, files: dict[str, bytes | Path]) -> Path:
    """One repository in the cache: blobs by hash, a snapshot of links to them, refs/main."""
    root = home / "hub" / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(REVISION)
    snapshot = root / "snapshots" / REVISION
    for name, content in files.items():
        blob = root / "blobs" / hashlib.sha256(str(content).encode() if isinstance(content, Path)
                                               else content).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Path):
            blob.symlink_to(content)  # the demo GGUF, not copied
        else:
            blob.write_bytes(content)
        (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / name).symlink_to(os.path.relpath(blob, (snapshot / name).parent))
    return snapshot


@pytest.fixture(scope="module")
def hf_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("hf-home")
    put(home, "Qwen/Qwen2.5-7B-Instruct-GGUF", {"qwen2.5-7b-instruct-q4_k_m.gguf": find_demo_gguf()})
    put(home, "Qwen/Qwen2.5-7B-Instruct", {"config.json": json.dumps(QWEN_7B_CONFIG).encode(),
                                           "model.safetensors.index.json": json.dumps(QWEN_7B_INDEX).encode()})
    put(home, "someone/split-GGUF", {"m-q8_0-00001-of-00002.gguf": b"GGUF first", "m-q8_0-00002-of-00002.gguf":
                                     b"GGUF second", "m-q2_k-00001-of-00002.gguf": b"GGUF only the first"})
    put(home, "someone/broken-GGUF", {"broken-Q4_K_M.gguf": b"<html>rate limited</html>"})
    return home


@pytest.fixture
def offline(hf_home, monkeypatch):
    """This process's huggingface_hub reading the cache, as the servers below do."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hf_home / "hub"))
    return hf_home


def env_of(hf_home: Path) -> dict:
    return {**os.environ, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}


def serve(args: list[str], hf_home: Path, tmp_path: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "pure_model_api.py"), *args, "--port", str(free_port()),
                           "--db", str(tmp_path / "c.sqlite3")], capture_output=True, text=True,
                          env=env_of(hf_home), timeout=timeout, cwd=ROOT)


def test_start_api_qwen_on_a_cpu_serves_the_cached_q4_k_m_gguf_on_llama_cpp(hf_home, tmp_path):
    port, log = free_port(), tmp_path / "server.log"
    with open(log, "wb") as output:
        process = subprocess.Popen([str(ROOT / "start_api.sh"), "--qwen", "--port", str(port), "--device", "cpu",
                                    "--db", str(tmp_path / "c.sqlite3")], env=env_of(hf_home),
                                   stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline
            try:
                if httpx.get(url + "/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        status = httpx.get(url + "/status").json()
        assert status["model_name"] == "Qwen/Qwen2.5-7B-Instruct-GGUF:Q4_K_M" and status["engine"] == "llama.cpp"
        estimate = status["memory_estimate"]
        assert estimate["where"] == "host memory" and 0 < estimate["needed"] <= estimate["available"]
        reply = httpx.post(url + "/chat", timeout=120, json={"message": "What is 2 + 2?", "temperature": 0,
                                                                "max_tokens": 16}).json()
        assert reply["status"] == "success" and "4" in reply["response"]
        names = [m["id"] for m in httpx.get(url + "/v1/models").json()["data"]]
        assert names == ["qwen", "Qwen/Qwen2.5-7B-Instruct-GGUF:Q4_K_M"]
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0


def test_a_model_too_large_for_this_cpu_is_refused_before_loading_with_what_would_fit(hf_home, tmp_path):
    result = serve(["--model", "Qwen/Qwen2.5-7B-Instruct", "--device", "cpu"], hf_home, tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert "needs about 3" in line and "weights 30.5 GB in float32" in line  # 15.2 GB of bf16, as float32
    assert "Qwen/Qwen2.5-7B-Instruct-GGUF:Q4_K_M" in line and "--skip-memory-check" in line


@pytest.mark.parametrize("model, says", [
    ("Qwen/Qwen2.5-7B-Instruct-GGUF:Q5_K_S", "no GGUF file with quantization 'Q5_K_S' in the Hugging Face cache: "
                                            "it has Q4_K_M"),
    ("Qwen/Qwen2.5-3B-Instruct-GGUF:Q4_K_M", "is not in the Hugging Face cache"),
    ("someone/broken-GGUF:Q4_K_M", "broken-Q4_K_M.gguf is not a GGUF file"),
    ("someone/split-GGUF:Q2_K", "1 of the 2 split files are there"),
])
def test_a_name_the_cache_cannot_serve_is_one_clear_line(hf_home, tmp_path, model, says):
    result = serve(["--model", model], hf_home, tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert says in result.stderr, result.stderr[-2000:]


def test_split_files_come_first_split_first(offline):
    first, second = hub.gguf_files("someone/split-GGUF:q8_0")
    assert first.name == "m-q8_0-00001-of-00002.gguf" and second.name == "m-q8_0-00002-of-00002.gguf"
    with pytest.raises(ModelLoadError, match="has Q2_K, Q8_0"):
        hub.gguf_files("someone/split-GGUF:Q4_0")


def test_aliases_fit_the_device():
    assert hub.resolve_alias("qwen", on_gpu=True) == "Qwen/Qwen2.5-7B-Instruct"
    assert hub.resolve_alias("qwen", on_gpu=False) == "Qwen/Qwen2.5-7B-Instruct-GGUF:Q4_K_M"
    assert hub.resolve_alias("qwen:1.5b", on_gpu=False) == "Qwen/Qwen2.5-1.5B-Instruct-GGUF:Q4_K_M"
    assert hub.resolve_alias("llama", on_gpu=True) == "meta-llama/Llama-3.1-8B-Instruct"
    assert hub.resolve_alias("llama", on_gpu=False) == hub.LLAMA_GGUF
    with pytest.raises(ModelLoadError, match="no Qwen2.5 Instruct of size '2b'"):
        hub.resolve_alias("qwen:2b", on_gpu=False)


def test_models_lists_the_cache_and_pull_finds_a_cached_file_offline(hf_home):
    run = [sys.executable, str(ROOT / "pure_model_api.py")]
    listed = subprocess.run([*run, "models"], capture_output=True, text=True, env=env_of(hf_home), cwd=ROOT)
    assert listed.returncode == 0
    assert "Qwen/Qwen2.5-7B-Instruct-GGUF" in listed.stdout and "GGUF: Q4_K_M" in listed.stdout
    pulled = subprocess.run([*run, "pull", "Qwen/Qwen2.5-7B-Instruct-GGUF:Q4_K_M"], capture_output=True, text=True,
                            env=env_of(hf_home), cwd=ROOT)
    assert pulled.returncode == 0 and pulled.stdout.strip().endswith("qwen2.5-7b-instruct-q4_k_m.gguf")
    assert Path(pulled.stdout.strip()).resolve() == find_demo_gguf().resolve()
