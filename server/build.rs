// The migrations are embedded by `sqlx::migrate!` (store.rs); rebuild when one is added.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
