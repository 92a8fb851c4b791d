//! Rebuilds the crate when a PostgreSQL migration is added or changed: `refinery` embeds the
//! files of `migrations/postgres` at compile time, and cargo does not watch that folder itself.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
