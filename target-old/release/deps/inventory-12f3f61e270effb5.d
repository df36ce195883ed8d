/work/main/target-old/release/deps/inventory-12f3f61e270effb5.d: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/inventory-0.3.25/src/lib.rs

/work/main/target-old/release/deps/libinventory-12f3f61e270effb5.rlib: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/inventory-0.3.25/src/lib.rs

/work/main/target-old/release/deps/libinventory-12f3f61e270effb5.rmeta: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/inventory-0.3.25/src/lib.rs

/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/inventory-0.3.25/src/lib.rs:
