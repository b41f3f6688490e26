//! `lake init`: writes a new project from `project-template/`, embedded in the binary at compile time.

use std::path::{Path, PathBuf};

use include_dir::{Dir, include_dir};

use crate::error::{LakeError, Result};

static TEMPLATE: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/project-template");

/// Files stored under another name in the template, so they do not act on this repository.
fn target_name(path: &Path) -> PathBuf {
    if path == Path::new("gitignore") {
        PathBuf::from(".gitignore")
    } else {
        path.to_path_buf()
    }
}

/// Writes the template into `dir`. A non-empty directory is refused unless `force` (then files are overwritten).
pub fn init(dir: &Path, force: bool) -> Result<Vec<PathBuf>> {
    if dir.exists() {
        let mut entries = std::fs::read_dir(dir).map_err(|e| LakeError::io(dir, e))?;
        if entries.next().is_some() && !force {
            return Err(LakeError::Usage(
                format!("{} is not empty", dir.display()),
                Some(
                    "choose a new directory, or pass --force to write the template over it".into(),
                ),
            ));
        }
    }
    let mut written = Vec::new();
    write_dir(&TEMPLATE, dir, &mut written)?;
    written.sort();
    Ok(written)
}

fn write_dir(source: &Dir<'_>, root: &Path, written: &mut Vec<PathBuf>) -> Result<()> {
    for file in source.files() {
        let relative = target_name(file.path());
        let target = root.join(&relative);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| LakeError::io(parent, e))?;
        }
        std::fs::write(&target, file.contents()).map_err(|e| LakeError::io(&target, e))?;
        written.push(relative);
    }
    for sub in source.dirs() {
        write_dir(sub, root, written)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_the_template_and_refuses_non_empty_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let project = dir.path().join("demo");
        let files = init(&project, false).unwrap();
        for expected in [
            "config.yaml",
            "models/full_model.sql",
            "models/seed_model.sql",
            "models/view_model.sql",
            "seeds/seed_data.csv",
            ".gitignore",
            "tests/test_full_model.yaml",
            "audits/assert_positive_order_ids.sql",
            "macros/demo_macros.sql",
        ] {
            assert!(
                files.contains(&PathBuf::from(expected)),
                "{expected} missing from {files:?}"
            );
            assert!(project.join(expected).is_file());
        }
        let err = init(&project, false).unwrap_err();
        assert!(err.is_usage());
        init(&project, true).unwrap();
    }
}
