#!/bin/sh
# `make demo`'s last step: explain a prompt through the running TorchServe, over REST and over gRPC,
# with the ecco command line. `make serve` has started TorchServe; it keeps running afterwards.
set -eu
cd "$(dirname "$0")/.."

PROMPT=${1:-The capital of France is}
NAME=${NAME:-smollm2-135m-instruct}
KEY_FILE=.run/serve/key_file.json
ECCO=.venv/bin/ecco
# the ports config.properties gives TorchServe
REST_PORT=$(sed -n 's/^inference_address=.*:\([0-9][0-9]*\)[[:space:]]*$/\1/p' config.properties)
GRPC_PORT=$(sed -n 's/^grpc_inference_port=\([0-9][0-9]*\)[[:space:]]*$/\1/p' config.properties)

echo
echo "== REST: POST http://127.0.0.1:$REST_PORT/explanations/$NAME"
"$ECCO" explain --url "http://127.0.0.1:$REST_PORT" --model "$NAME" --key-file "$KEY_FILE" \
    --prompt "$PROMPT" --max-new-tokens 4 --faithfulness
echo
echo "== gRPC: InferenceAPIsService/Predictions on 127.0.0.1:$GRPC_PORT"
"$ECCO" explain --grpc "127.0.0.1:$GRPC_PORT" --model "$NAME" --key-file "$KEY_FILE" \
    --prompt "$PROMPT" --max-new-tokens 4 --faithfulness
echo
echo "== the views: one HTML file (opens offline; docs/views.md)"
"$ECCO" explain --grpc "127.0.0.1:$GRPC_PORT" --model "$NAME" --key-file "$KEY_FILE" \
    --prompt "$PROMPT" --max-new-tokens 4 --n-steps 16 --method occlusion --method integrated_gradients --method grad_x_input \
    --layers --watch " Paris" --watch " London" --json --html .run/demo.html > /dev/null
echo "open $(pwd)/.run/demo.html"
echo
echo "TorchServe keeps running (REST 127.0.0.1:$REST_PORT, gRPC 127.0.0.1:$GRPC_PORT; token: the"
echo "\"inference\" key of $KEY_FILE). Stop it with: make stop"
