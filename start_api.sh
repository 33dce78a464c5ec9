#!/usr/bin/env bash
# Start the Pure Model API service.
#   ./start_api.sh --qwen                      Qwen/Qwen2.5-7B-Instruct
#   ./start_api.sh --llama                     meta-llama/Llama-3.1-8B-Instruct
#   ./start_api.sh --demo                      SmolLM2-135M-Instruct, bundled, runs on a CPU
#   ./start_api.sh --model NAME [--port 8080]  any model id, directory or .gguf file
# Other flags (--engine, --device, --host, --db, --api-key, ...) pass through to pure_model_api.py.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
usage() {
  echo "usage: $0 (--qwen | --llama | --demo | --model NAME) [--port N] [--host H] [--device D] [other pure_model_api.py flags]" >&2
  exit 2
}
model="Qwen/Qwen2.5-7B-Instruct"
passthrough=()
while (($#)); do
  case "$1" in
    --qwen) model="Qwen/Qwen2.5-7B-Instruct" ;;
    --llama) model="meta-llama/Llama-3.1-8B-Instruct" ;;
    --demo) model="demo" ;;
    --model) [ $# -ge 2 ] || usage; model="$2"; shift ;;
    -h|--help) usage ;;
    --port|--host|--device|--dtype|--db|--api-key|--cors-origins|--served-model-name|--system-prompt|\
    --max-history-rounds|--max-batch-size|--max-queue|--kv-token-budget|--max-body-bytes|--shutdown-timeout|--log-level|\
    --engine|--max-model-len|--gpu-memory-utilization|--kv-cache-gb|--tensor-parallel-size|--pipeline-parallel-size|\
    --distributed-executor-backend)
      [ $# -ge 2 ] || usage; passthrough+=("$1" "$2"); shift ;;
    *) echo "unknown option: $1" >&2; usage ;;
  esac
  shift
done
python="$here/.venv/bin/python"
[ -x "$python" ] || python="python3"
exec "$python" "$here/pure_model_api.py" --model "$model" "${passthrough[@]}"
