//! Builds the default policy component and embeds it in the library.

#[path = "build/guest.rs"]
mod guest;

fn main() {
    let manifest_dir = std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    guest::build(&manifest_dir.join("../guest"), "dsession_policy");
    println!("cargo:rerun-if-changed=build");
}
