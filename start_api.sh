#!/usr/bin/env bash
# Start the Pure Model API service.
#   ./start_api.sh --qwen                      Qwen2.5-7B-Instruct: bf16 on vLLM on a GPU, its Q4_K_M GGUF
#                                              (Qwen/Qwen2.5-7B-Instruct-GGUF) on llama.cpp on a CPU
#   ./start_api.sh --qwen --qwen-size 1.5b     a smaller Qwen2.5 Instruct (0.5b 1.5b 3b 7b 14b 32b 72b)
#   ./start_api.sh --llama                     Llama-3.1-8B-Instruct: bf16 on vLLM on a GPU, Q4_K_M GGUF
#                                              (bartowski/Meta-Llama-3.1-8B-Instruct-GGUF) on a CPU
#   ./start_api.sh --demo                      SmolLM2-135M-Instruct, bundled, runs on a CPU
#   ./start_api.sh --model NAME [--port 8080]  a model id, org/repo:QUANT (GGUF), directory or .gguf file
# Other flags (--engine, --device, --host, --db, --api-key, ...) pass through to pure_model_api.py.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
usage() {
  echo "usage: $0 (--qwen [--qwen-size S] | --llama | --demo | --model NAME) [--port N] [--host H] [--device D] [other pure_model_api.py flags]" >&2
  exit 2
}
model="qwen"
qwen_size=""
passthrough=()
while (($#)); do
  case "$1" in
    --qwen) model="qwen" ;;
    --qwen-size) [ $# -ge 2 ] || usage; qwen_size="$2"; shift ;;
    --llama) model="llama" ;;
    --skip-memory-check|--no-ui) passthrough+=("$1") ;;
    --demo) model="demo" ;;
    --model) [ $# -ge 2 ] || usage; model="$2"; shift ;;
    -h|--help) usage ;;
    --port|--host|--device|--dtype|--db|--api-key|--cors-origins|--served-model-name|--system-prompt|\
    --max-history-rounds|--max-batch-size|--max-queue|--kv-token-budget|--max-body-bytes|--shutdown-timeout|--log-level|\
    --engine|--max-model-len|--gpu-memory-utilization|--kv-cache-gb|--tensor-parallel-size|--pipeline-parallel-size|\
    --distributed-executor-backend|--kv-ram-gb|--kv-disk-gb|--kv-dir|--kv-offload-gb)
      [ $# -ge 2 ] || usage; passthrough+=("$1" "$2"); shift ;;
    *) echo "unknown option: $1" >&2; usage ;;
  esac
  shift
done
if [ -n "$qwen_size" ]; then
  [ "$model" = "qwen" ] || { echo "--qwen-size goes with --qwen" >&2; usage; }
  model="qwen:$qwen_size"
fi
python="$here/.venv/bin/python"
[ -x "$python" ] || python="python3"
exec "$python" "$here/pure_model_api.py" --model "$model" "${passthrough[@]}"
