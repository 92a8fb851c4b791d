//! `wasi-command`: **TEST ONLY. Not an adapter.** A valid WebAssembly component of another world
//! (`wasi:cli/command`: it exports `wasi:cli/run`, not `on-incoming`). The hot-reload tests put
//! it where an adapter is expected, and the bridge must reject it and keep the previous version.

fn main() {
    println!("a wasi:cli command, not a dolphin-bridge adapter");
}
