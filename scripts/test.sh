#!/usr/bin/env bash
# Runs every check, as CI does: installs the pinned test tools, then formatting, lints, all
# tests and the docs with warnings denied. Needs only a Rust toolchain (with rustfmt and clippy)
# and python3; everything else comes from the package registries.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*" >&2; }

step "installing pinned test tools (.tools/)"
scripts/install-tools.sh
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  step "adding rustfmt and clippy to the toolchain"
  rustup component add rustfmt clippy
fi

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
test_log=$(mktemp)
trap 'rm -f "$test_log"' EXIT
cargo test --workspace --locked 2>&1 | tee "$test_log"

step "cargo doc (warnings denied)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked

step "all checks passed"
# One closing line with the totals over every test binary (cargo prints one line per binary,
# and the last is often a doc-test run of a crate without doc tests).
awk '/^test result:/ { passed += $4; failed += $6; ignored += $8 }
     END { printf "tests: %d passed, %d failed, %d skipped\n", passed, failed, ignored }' "$test_log"
