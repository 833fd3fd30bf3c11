# cargo-fuzz, for the fuzz smoke run (fuzz/smoke.sh). Only the stable
# toolchain is installed; fuzz/README.md says how it builds there.
CARGO_FUZZ_VERSION=0.13.2
if ! cargo fuzz --version 2>/dev/null | grep -q " $CARGO_FUZZ_VERSION"; then
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked --quiet
fi
