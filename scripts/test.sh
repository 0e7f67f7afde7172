#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, then every test.
# Installs what the tests need from Debian's packages when it is missing, and fails loudly when
# something cannot be had: a test that skips because a tool is absent is a test that does not exist.
set -euo pipefail
cd "$(dirname "$0")/.."

need_packages=()
command -v curl >/dev/null 2>&1 || need_packages+=(curl)
# The web page's end-to-end test drives headless Chromium over WebDriver (tests/web.rs).
[[ -x /usr/bin/chromium ]] || need_packages+=(chromium)
[[ -x /usr/bin/chromedriver ]] || need_packages+=(chromium-driver)
if ((${#need_packages[@]})); then
  echo "==> installing ${need_packages[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_packages[@]}"
  apt-get clean # the downloaded archives are not needed again, and the build needs the space
fi
for tool in cargo rustfmt cargo-clippy curl /usr/bin/chromium /usr/bin/chromedriver; do
  command -v "$tool" >/dev/null 2>&1 || { echo "test.sh: $tool is missing" >&2; exit 1; }
done

# A whole-suite run gains nothing from incremental artifacts, which would double the space the
# build takes. Running out of disk shows up as a linker "Bus error", so say how much there is.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
build_dir=${CARGO_TARGET_DIR:-target}
mkdir -p "$build_dir"
free_mib=$(df -Pm "$build_dir" | awk 'NR == 2 { print $4 }')
echo "==> ${free_mib} MiB free on the build disk (a clean build of the tests takes about 900 MiB)"

echo "==> cargo fmt --check"
cargo fmt --all --check
echo "==> cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
echo "==> cargo test"
cargo test --locked
