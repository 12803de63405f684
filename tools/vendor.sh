#!/bin/bash
# make vendor: refresh src/rust/vendor.tar.xz, the crates src/Makevars builds from
# offline (as CRAN requires). Crates that no Linux or macOS build of the package
# compiles (Windows-only crates, the core crate's test-only dependencies) are kept
# as stubs, their Cargo.toml only, because cargo still needs them to read
# Cargo.lock; that keeps the tarball small.
set -euo pipefail
export PATH="$HOME/.cargo/bin:$PATH"
cd "$(dirname "$0")/../src/rust"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cargo vendor --locked --versioned-dirs "$tmp/vendor" >/dev/null

for target in x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu x86_64-apple-darwin aarch64-apple-darwin; do
  cargo tree --locked -e normal,build --target "$target" -p mixedrs-binding --prefix none --format '{p}'
done | awk '{ v = $2; sub(/^v/, "", v); print $1 "-" v }' | sort -u > "$tmp/keep"

stubbed=0
for dir in "$tmp"/vendor/*/; do
  crate=$(basename "$dir")
  grep -qx "$crate" "$tmp/keep" && continue
  package=$(sed -n 's/.*"package":"\([0-9a-f]*\)".*/\1/p' "$dir/.cargo-checksum.json")
  find "$dir" -mindepth 1 -maxdepth 1 ! -name Cargo.toml ! -name .cargo-checksum.json -exec rm -rf {} +
  mkdir -p "$dir/src" && : > "$dir/src/lib.rs"
  # targets the manifest names must exist for cargo to load it
  sed -n 's/^\(path\|build\) *= *"\([^"]*\)".*/\2/p' "$dir/Cargo.toml" | while read -r f; do
    mkdir -p "$dir/$(dirname "$f")" && : > "$dir/$f"
  done
  printf '{"files":{},"package":"%s"}' "$package" > "$dir/.cargo-checksum.json"
  stubbed=$((stubbed + 1))
done

tar -cJf vendor.tar.xz -C "$tmp" vendor
echo "src/rust/vendor.tar.xz: $(wc -l < "$tmp/keep") crates for the build, $stubbed stubs, $(du -h vendor.tar.xz | cut -f1)"
