#!/usr/bin/env bash
# Configures (once) and builds Fulcrum into ./build (or $FULCRUM_BUILD).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${FULCRUM_BUILD:-build}
if [[ ! -f "$build/build.ninja" ]]; then
  meson setup "$build" --buildtype=release -Db_ndebug=false >/dev/null
fi
ninja -C "$build" -j "$(nproc)"
