//! Links DuckDB's prebuilt shared library (the default build) so a cold build compiles no C++.
//!
//! `libduckdb-sys` without its `bundled` feature asks the linker for `-lduckdb`; this script says where that
//! library is (`DUCKDB_LIB_DIR`, or the checksum-verified copy `scripts/fetch-duckdb.sh` caches from the npm
//! registry) and records run-time search paths, so `lake` starts with no `LD_LIBRARY_PATH`: first the folder
//! holding the binary (`$ORIGIN`, where the library is also placed for shipping both together), then the cache.
//! With `--features bundled` DuckDB is compiled into the binary and this script does nothing.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=scripts/fetch-duckdb.sh");
    println!("cargo:rerun-if-env-changed=DUCKDB_LIB_DIR");
    println!("cargo:rerun-if-env-changed=LAKE_DUCKDB_CACHE");
    if env::var_os("CARGO_FEATURE_BUNDLED").is_some() {
        return;
    }
    let library_dir = match env::var_os("DUCKDB_LIB_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => fetch_prebuilt_library(),
    };
    let library = library_dir.join("libduckdb.so");
    if !library.is_file() {
        fail(&format!("{} does not exist", library.display()));
    }
    println!("cargo:rerun-if-changed={}", library.display());
    println!("cargo:rustc-link-search=native={}", library_dir.display());
    println!("cargo:rustc-link-arg=-Wl,-rpath,$ORIGIN");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", library_dir.display());
    place_beside_binaries(&library);
}

fn fetch_prebuilt_library() -> PathBuf {
    let script = Path::new(&env::var("CARGO_MANIFEST_DIR").unwrap_or_default())
        .join("scripts/fetch-duckdb.sh");
    let output = Command::new("bash")
        .arg(&script)
        .output()
        .unwrap_or_else(|error| fail(&format!("could not run {}: {error}", script.display())));
    if !output.status.success() {
        fail(&String::from_utf8_lossy(&output.stderr));
    }
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}

/// Puts the library in the profile folder (`target/release`, where `lake` is written) so the `$ORIGIN` entry
/// finds it when the two are copied elsewhere together. A hard link costs nothing when the cache shares a disk.
fn place_beside_binaries(library: &Path) {
    // OUT_DIR is <target>/<profile>/build/lake-<hash>/out.
    let Some(profile_dir) = env::var_os("OUT_DIR")
        .map(PathBuf::from)
        .and_then(|out| out.ancestors().nth(3).map(Path::to_path_buf))
    else {
        return;
    };
    let placed = profile_dir.join("libduckdb.so");
    let _ = fs::remove_file(&placed);
    if fs::hard_link(library, &placed).is_err() {
        // Not fatal: the absolute rpath to the cache still finds the library.
        let _ = fs::copy(library, &placed);
    }
}

fn fail(reason: &str) -> ! {
    panic!(
        "lake links DuckDB's prebuilt libduckdb.so 1.5.5 and could not find it: {reason}\n\
         hint: set DUCKDB_LIB_DIR to a folder holding libduckdb.so 1.5.5, make `npm` available so \
         scripts/fetch-duckdb.sh can fetch it, or compile DuckDB into lake with `--features bundled`"
    )
}
