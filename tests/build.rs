//! Builds the hostile test policy component.

#[path = "../host/build/guest.rs"]
mod guest;

fn main() {
    let manifest_dir = std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    guest::build(
        &manifest_dir.join("guests/hostile"),
        "dsession_hostile_policy",
    );
    println!("cargo:rerun-if-changed=../host/build");
}
