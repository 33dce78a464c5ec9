"""Models by name: the seed's `qwen` and `llama`, which fit the device, and Hugging Face
repositories of GGUF files with a quantization tag (`Qwen/Qwen2.5-7B-Instruct-GGUF:Q4_K_M`).

A tagged name picks the GGUF file(s) of that quantization in the repository (split files
`-00001-of-0000N.gguf` included; llama.cpp loads the rest from the first). Downloads go through
`huggingface_hub` into the usual Hugging Face cache, so they are shared with other tools, resume,
and honour HF_HOME, HF_TOKEN and HF_HUB_OFFLINE. Offline, or when the hub cannot be reached, the
cache alone answers. No torch here.
"""

from __future__ import annotations

import logging
import re
import sys
from functools import partial
from pathlib import Path

from tqdm.std import tqdm

from pure_model_api.errors import ModelLoadError

log = logging.getLogger(__name__)

QWEN_SIZES = ("0.5B", "1.5B", "3B", "7B", "14B", "32B", "72B")
# Llama 3.1 8B Instruct has no GGUF from Meta; bartowski's is the most used, kept up to date with
# llama.cpp's tokenizer fixes, and has every common quantization as one file each.
LLAMA_GGUF = "bartowski/Meta-Llama-3.1-8B-Instruct-GGUF:Q4_K_M"
LLAMA = "meta-llama/Llama-3.1-8B-Instruct"
TAGGED = re.compile(r"^(?P<repo>[\w.-]+/[\w.-]+):(?P<tag>[\w.-]+)$")
SPLIT = re.compile(r"-(\d{5})-of-(\d{5})$")
QUANT = re.compile(r"(?:^|[-._])((?:i?q\d[a-z0-9_]*|f16|f32|bf16))$", re.I)


def resolve_alias(name: str, on_gpu: bool) -> str:
    """`qwen`, `qwen:1.5b`, `llama`: the instruct model in bf16 on a GPU (vLLM), its Q4_K_M GGUF
    on a CPU (llama.cpp). Any other name is returned as it is."""
    lowered = name.lower()
    if lowered == "llama":
        return LLAMA if on_gpu else LLAMA_GGUF
    if lowered == "qwen" or lowered.startswith("qwen:"):
        size = (lowered.split(":", 1)[1] if ":" in lowered else "7b").upper()
        if size not in QWEN_SIZES:
            raise ModelLoadError(f"no Qwen2.5 Instruct of size '{size.lower()}': use one of "
                                 f"{', '.join(s.lower() for s in QWEN_SIZES)}")
        return f"Qwen/Qwen2.5-{size}-Instruct" + ("" if on_gpu else "-GGUF:Q4_K_M")
    return name


def is_tagged(name: str) -> bool:
    return TAGGED.match(name) is not None and not Path(name).exists()


def quant_of(filename: str) -> str | None:
    """The quantization tag a GGUF file's name carries (`Q4_K_M`), if any."""
    stem = SPLIT.sub("", Path(filename).name.removesuffix(".gguf"))
    found = QUANT.search(stem)
    return found.group(1).upper() if found else None


def gguf_files(name: str) -> list[Path]:
    """The local GGUF file(s) of `org/repo:TAG`, first split first: from the hub into the cache
    where it can be reached, else from the cache."""
    repo, tag = TAGGED.match(name).group("repo", "tag")
    listing = _hub_listing(repo)
    if listing is not None:
        names = _of_tag(listing, tag, repo, "the repository")
        return _check([_download(repo, filename) for filename in names], name)
    snapshot = _cached_snapshot(repo)
    cached = [str(p.relative_to(snapshot)) for p in snapshot.rglob("*.gguf")]
    names = _of_tag(cached, tag, repo, "the Hugging Face cache")
    return _check([snapshot / filename for filename in names], name)


def _of_tag(filenames: list[str], tag: str, repo: str, where: str) -> list[str]:
    ggufs = [f for f in filenames if f.endswith(".gguf")]
    chosen = sorted(f for f in ggufs if (quant_of(f) or "") == tag.upper())
    if not chosen:
        tags = sorted({quant_of(f) for f in ggufs} - {None})
        raise ModelLoadError(f"{repo} has no GGUF file with quantization '{tag}' in {where}: "
                             + (f"it has {', '.join(tags)}" if tags else "it has no GGUF files"))
    first_parts = {SPLIT.sub("", Path(f).stem) for f in chosen}
    if len(first_parts) > 1:
        raise ModelLoadError(f"{repo} has several GGUF files with quantization '{tag}': {', '.join(chosen)}")
    return chosen


def gguf_parts(first: Path) -> list[Path]:
    """All the split files of a GGUF whose first file is `first` (or `first` alone)."""
    split = SPLIT.search(first.stem)
    if not split:
        return [first]
    stem = SPLIT.sub("", first.stem)
    return [first.with_name(f"{stem}-{n:05d}-of-{split.group(2)}.gguf") for n in range(1, int(split.group(2)) + 1)]


def _check(paths: list[Path], name: str) -> list[Path]:
    """Every split there, each a whole GGUF file: a partial or corrupt download is one clear line."""
    for path in paths:
        split = SPLIT.search(path.stem)
        if split and len(paths) != int(split.group(2)):
            raise ModelLoadError(f"{name}: {len(paths)} of the {int(split.group(2))} split files are there; "
                                 f"the download is incomplete (pure-model-api pull {name})")
        try:
            with open(path, "rb") as file:
                magic = file.read(4)
        except OSError as error:
            raise ModelLoadError(f"{name}: {path.name} cannot be read ({error.strerror}): the download is "
                                 f"incomplete (pure-model-api pull {name})") from error
        if magic != b"GGUF":
            raise ModelLoadError(f"{name}: {path.name} is not a GGUF file (a corrupt or partial download): "
                                 f"delete it from the Hugging Face cache and pull it again")
    return paths


def _hub_listing(repo: str) -> list[str] | None:
    """The repository's files, or None when offline or the hub cannot be reached."""
    from huggingface_hub import constants, list_repo_files
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    if constants.HF_HUB_OFFLINE:
        return None
    try:
        return list_repo_files(repo)
    except (OfflineModeIsEnabled, OSError, HfHubHTTPError) as error:
        if getattr(getattr(error, "response", None), "status_code", None) in (401, 403, 404):
            raise ModelLoadError(f"{repo} is not on the Hugging Face hub, or it is gated and HF_TOKEN is "
                                 f"not set: {error}") from error
        log.info("the Hugging Face hub cannot be reached (%s): looking in the cache", type(error).__name__)
        return None


class LogProgress(tqdm):
    """A download's progress as log lines, for a log that is not a terminal: one line at each tenth
    of the file, and one at its end (huggingface_hub's bar needs a terminal)."""

    def __init__(self, *args, label: str | None = None, **kwargs):
        kwargs.pop("name", None)  # huggingface_hub's own tqdm takes a name; tqdm does not
        self.label, self.unit = label or kwargs.get("desc") or "a file", kwargs.get("unit", "it")
        super().__init__(*args, **{**kwargs, "disable": True})  # no bar: update() below logs instead
        self.tenths = int(10 * self.n / self.total) if self.total else 0

    def amount(self, count: float) -> str:
        return f"{count / 1e6:.1f} MB" if self.unit == "B" else f"{count:.0f} {self.unit}"

    def update(self, n: float = 1) -> None:
        self.n += n
        tenths = int(10 * self.n / self.total) if self.total else 0
        if tenths > self.tenths:
            self.tenths = tenths
            log.info("downloading %s: %d%% of %s", self.label, 10 * tenths, self.amount(self.total))


def progress_class(label: str | None = None) -> type[tqdm] | None:
    """huggingface_hub's bar on a terminal (None: its default), log lines otherwise."""
    return None if sys.stderr.isatty() else partial(LogProgress, label=label)


def _download(repo: str, filename: str) -> Path:
    from huggingface_hub import hf_hub_download

    log.info("%s: %s (from the Hugging Face cache, downloading what is missing)", repo, filename)
    return Path(hf_hub_download(repo, filename, tqdm_class=progress_class(filename)))


def _cached_snapshot(repo: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo, local_files_only=True))
    except (LocalEntryNotFoundError, OSError) as error:
        raise ModelLoadError(f"{repo} is not in the Hugging Face cache and the hub cannot be reached: "
                             f"run `pure-model-api pull {repo}:TAG` where there is a network, or copy "
                             f"the cache (HF_HOME) here") from error


def cached_file(repo: str, filename: str) -> Path | None:
    """A file of a repository if the Hugging Face cache has it (no network)."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, filename)
    return Path(found) if isinstance(found, str) else None


def pull(name: str) -> list[Path]:
    """Download `org/repo:TAG` (its GGUF files) or `org/repo` (the whole repository) into the cache."""
    from huggingface_hub import snapshot_download

    model = resolve_alias(name, on_gpu=False)  # any other name comes back as it is
    if is_tagged(model):
        return gguf_files(model)
    return [Path(snapshot_download(model, tqdm_class=progress_class()))]


def cached_models() -> list[dict]:
    """What the Hugging Face cache holds: each model repository, its size and its GGUF quantizations."""
    from huggingface_hub import scan_cache_dir

    rows = []
    for repo in sorted(scan_cache_dir().repos, key=lambda r: r.repo_id):
        if repo.repo_type != "model":
            continue
        files = {f.file_name for revision in repo.revisions for f in revision.files}
        quants = sorted({q for f in files if f.endswith(".gguf") and (q := quant_of(f))})
        rows.append({"model": repo.repo_id, "bytes": repo.size_on_disk, "gguf": quants})
    return rows
