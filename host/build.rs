//! Builds the built-in policy components (the default and the hardened
//! one) and embeds them in the library.

#[path = "build/guest.rs"]
mod guest;

fn main() {
    let manifest_dir = std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    guest::build(&manifest_dir.join("../guest"), "dsession_policy");
    guest::build(
        &manifest_dir.join("../guest/hardened"),
        "dsession_policy_hardened",
    );
    println!("cargo:rerun-if-changed=build");
}
