//! `sqlx::migrate!` embeds `migrations/` at compile time, but cargo does not know that the
//! crate depends on that folder: without this, a new migration file would not be built in.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
