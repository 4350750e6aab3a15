#!/usr/bin/env bash
# Creates (or refreshes) .venv-sam, a virtualenv holding only the AWS SAM CLI and cfn-lint.
# SAM CLI pins its own boto3 and pydantic, so it lives apart from the project's .venv.
# Idempotent: a venv that already has the pinned version is left as it is.
set -euo pipefail

SAM_CLI_VERSION="${SAM_CLI_VERSION:-1.170.0}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SAM_VENV:-$ROOT/.venv-sam}"
PYTHON="${SAM_PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3

if [[ -x "$VENV/bin/sam" ]] \
  && [[ "$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("aws-sam-cli"))' 2>/dev/null)" == "$SAM_CLI_VERSION" ]]; then
  echo "sam-venv: $VENV already has aws-sam-cli $SAM_CLI_VERSION"
  exit 0
fi

echo "sam-venv: creating $VENV with aws-sam-cli $SAM_CLI_VERSION ($("$PYTHON" --version))"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "aws-sam-cli==$SAM_CLI_VERSION"
"$VENV/bin/sam" --version
"$VENV/bin/cfn-lint" --version
