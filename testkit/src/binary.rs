//! Where the `licensed` executable of this build is.

use std::path::{Path, PathBuf};

use crate::Error;

/// The executable's file name.
const BINARY: &str = "licensed";

/// The `licensed` executable of the running build.
///
/// In order: `$LICENSED_BIN`; `licensed` next to the running executable or one directory
/// up (a test or bench binary sits in `target/<profile>/deps`, the `chaos` binary in
/// `target/<profile>`); `$CARGO_TARGET_DIR/<profile>/licensed`, with the running
/// executable's profile, then `debug`. Cargo builds the binary before a package's
/// integration tests and benchmarks; elsewhere, the error says how to build it.
pub fn licensed_binary() -> Result<PathBuf, Error> {
    if let Some(path) = std::env::var_os("LICENSED_BIN") {
        return Ok(PathBuf::from(path));
    }
    let mut candidates = Vec::new();
    let exe = std::env::current_exe().ok();
    let mut profiles = Vec::new();
    if let Some(exe) = &exe {
        for dir in exe.ancestors().skip(1).take(2) {
            candidates.push(dir.join(BINARY));
        }
        // `.../<profile>/deps/x` or `.../<profile>/x`.
        let parent = exe.parent();
        let profile_dir = match parent {
            Some(dir) if dir.file_name().is_some_and(|name| name == "deps") => dir.parent(),
            other => other,
        };
        if let Some(name) = profile_dir.and_then(Path::file_name) {
            profiles.push(name.to_os_string());
        }
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        profiles.push("debug".into());
        for profile in profiles {
            candidates.push(Path::new(&target).join(profile).join(BINARY));
        }
    }
    match candidates.iter().find(|path| path.is_file()) {
        Some(path) => Ok(path.clone()),
        None => Err(Error::NoBinary {
            searched: candidates
                .iter()
                .map(|path| path.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}
