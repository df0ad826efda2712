#!/usr/bin/env bash
# Runs every end-to-end test (tests/e2e/*_test.sh) with a time limit each; exits non-zero if
# any failed. Needs root (DPDK, network namespaces).
set -uo pipefail
cd "$(dirname "$0")"
if [[ $(id -u) -ne 0 ]]; then
  echo "e2e: needs root" >&2
  exit 1
fi
passed=0
failed=0
for test in *_test.sh; do
  [[ -n ${E2E_ONLY:-} && $test != *"$E2E_ONLY"* ]] && continue
  echo "--- $test"
  start=$SECONDS
  if timeout --kill-after=10 "${E2E_TIMEOUT:-600}" bash "$test"; then
    passed=$((passed + 1))
    echo "--- $test: ok ($((SECONDS - start)) s)"
  else
    failed=$((failed + 1))
    echo "--- $test: FAILED ($((SECONDS - start)) s)"
  fi
done
echo "e2e: $passed passed, $failed failed"
((failed == 0))
