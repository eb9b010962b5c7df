#!/bin/sh
# ecco-serve container: the handler-metrics exporter in the background, TorchServe in the foreground.
# $1: the model root, holding config/config.properties and model-store/*.mar (/srv/ecco in the image,
# /mnt/models under KServe). $ECCO_MODELS: the models to serve, NAME=ARCHIVE (default: the default model).
set -eu
root="${1:-/srv/ecco}"
models="${ECCO_MODELS:-smollm2-135m-instruct=smollm2-135m-instruct.mar}"
mkdir -p "$PROMETHEUS_MULTIPROC_DIR" /tmp/logs
python -m ecco_serving.metrics_exporter --host 0.0.0.0 --port 8083 --dir "$PROMETHEUS_MULTIPROC_DIR" --clean &
cd /tmp
exec torchserve --foreground --ncs --ts-config "$root/config/config.properties" \
    --model-store "$root/model-store" --models $models
