#!/usr/bin/env bash
# Installs the third-party Python clients tests and scripts/chaos.sh use as independent checks
# (a Kafka Connect REST client, Confluent's Kafka client, the AWS SDK for S3), in a virtualenv
# cached under ~/.cache/sluice; skips when present. Prints its python.
source "$(dirname "$0")/lib.sh"
ensure_python
PYTOOLS="$SLUICE_CACHE/tools/pytools-2"
PY="$PYTOOLS/bin/python"
if [ -x "$PY" ] && "$PY" -c 'import kafka_connect, confluent_kafka, boto3' 2>/dev/null; then
  echo "$PY"; exit 0
fi
log "installing Python test clients into $PYTOOLS"
rm -rf "$PYTOOLS"
if ! python3 -m venv "$PYTOOLS" >&2 2>/dev/null; then
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2
  python3 -m venv "$PYTOOLS" >&2
fi
"$PY" -m pip install --quiet --disable-pip-version-check "kafka-connect-py==1.0.0" \
  "confluent-kafka==2.16.1" "boto3==1.44.5" >&2
echo "$PY"
