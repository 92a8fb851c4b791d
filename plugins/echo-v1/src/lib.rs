//! `echo-v1`: **TEST ONLY.** The `echo` adapter, its very source, built with the build tag
//! `v1` (see `build.rs`), so every event it delivers carries `"build": "v1"`. The hot-reload
//! tests and `reload-bench` swap a tenant's adapter file between this and the other version and
//! tell from the vendor's bodies which version handled each event.

#[path = "../../echo/src/lib.rs"]
mod echo;
