//! The host side of the interfaces the `adapter` world imports, one module per interface, each an
//! `impl wit::<interface>::Host for CallState`.

mod config;
mod crypto;
pub mod http;
mod kv;
mod log;
mod three_dolphins;
