"""The inference engines behind one interface (base.py). No HTTP here.

Shared by every engine: the interface and options (base.py), sampling parameters and events
(params.py), chat prompts (prompts.py), streamed text (text.py), choosing and loading
(select.py, loading.py), tools and the replies that call them (tools.py, tool_calls.py).
Shared by the engines that run the model in this process: the request lifecycle (inference.py,
requests.py) and the sampler (sampling.py). One sub-package per engine: llamacpp/, transformers/,
vllm/.
"""

from pure_model_api.engine.base import EngineStats
from pure_model_api.engine.params import Finished, SamplingParams, TextDelta
from pure_model_api.engine.tool_calls import ToolCallGeneration
from pure_model_api.engine.tools import EMPTY_PARAMETERS, Tool, ToolRequest

__all__ = ["EMPTY_PARAMETERS", "EngineStats", "Finished", "SamplingParams", "TextDelta", "Tool", "ToolCallGeneration",
           "ToolRequest"]
