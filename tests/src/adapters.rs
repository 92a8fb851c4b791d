//! Where the workspace keeps the bridge binary and the built adapters.

use std::path::{Path, PathBuf};

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives one folder below the workspace root")
        .to_path_buf()
}

/// Cargo's target folder: `$CARGO_TARGET_DIR` when set, else `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => workspace_root().join(dir),
        _ => workspace_root().join("target"),
    }
}

/// The bridge binary: `$DOLPHIN_BRIDGE_BIN`, else `<target>/debug/dolphin-bridge`.
pub fn bridge_binary() -> PathBuf {
    let path = match std::env::var_os("DOLPHIN_BRIDGE_BIN") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => target_dir()
            .join("debug")
            .join(format!("dolphin-bridge{}", std::env::consts::EXE_SUFFIX)),
    };
    assert!(
        path.is_file(),
        "the bridge binary {} is missing: run `cargo build -p dolphin-bridge` (or `cargo xtask test`), \
         or point DOLPHIN_BRIDGE_BIN at one",
        path.display()
    );
    path
}

/// Where `cargo xtask build-plugins` puts adapter `name`.
pub fn adapter_file(name: &str) -> PathBuf {
    target_dir()
        .join("wasm32-wasip2")
        .join("adapter")
        .join(format!("{}.wasm", name.replace('-', "_")))
}

/// Whether adapter `name` has been built.
pub fn adapter_available(name: &str) -> bool {
    adapter_file(name).is_file()
}

/// The built adapter `name`; panics telling how to build it when missing.
pub fn adapter(name: &str) -> PathBuf {
    let path = adapter_file(name);
    assert!(
        path.is_file(),
        "adapter {name} is not built ({} is missing): run `cargo xtask build-plugins`",
        path.display()
    );
    path
}

pub fn echo() -> PathBuf {
    adapter("echo")
}

pub fn chatwoot() -> PathBuf {
    adapter("chatwoot")
}

pub fn rocketchat() -> PathBuf {
    adapter("rocketchat")
}

pub fn sunshine() -> PathBuf {
    adapter("sunshine")
}

/// The echo adapter as built for `dolphin:bridge@0.1.0`, kept as it was built (never rebuilt):
/// what a partner's 0.1 adapter is to a newer host. See `tests/fixtures/README.md`.
pub fn echo_world_0_1() -> PathBuf {
    workspace_root()
        .join("tests")
        .join("fixtures")
        .join("echo-world-0.1.wasm")
}

pub fn hostile() -> PathBuf {
    adapter("hostile")
}

/// A compiled-adapter cache shared by every bridge the tests start, so that each adapter is
/// compiled once per build of it rather than once per test.
pub fn shared_adapter_cache() -> PathBuf {
    let dir = target_dir().join("e2e-adapter-cache");
    std::fs::create_dir_all(&dir).unwrap_or_else(|err| panic!("cannot create {}: {err}", dir.display()));
    dir
}
