#!/bin/sh
# N BitFit training workers as Ray actors on a running Ray cluster: each claims jobs from the
# shared store's queue (POST /jobs puts them there), trains and publishes them.
#   WORKERS=4 GPUS_PER_WORKER=1 STORE=s3://bitfit-tasks/prod deploy/ray/train_fleet.sh
# Credentials come the standard AWS way on every node; never put keys here.
set -eu
: "${STORE:=s3://bitfit-tasks/prod}"
: "${WORKERS:=2}"
: "${CPUS_PER_WORKER:=2}"
: "${GPUS_PER_WORKER:=0}"
: "${BITFIT_S3_ENDPOINT_URL:=}"
exec ray job submit --working-dir . \
  --runtime-env-json "{\"env_vars\": {\"BITFIT_S3_ENDPOINT_URL\": \"${BITFIT_S3_ENDPOINT_URL}\"}}" \
  -- python -m training.jobs.ray_fleet --store "$STORE" --workers "$WORKERS" \
     --cpus-per-worker "$CPUS_PER_WORKER" --gpus-per-worker "$GPUS_PER_WORKER"
