//! Files only their owner may read, written whole or not at all.

use std::{
    io::Write,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    path::Path,
};

use crate::SetupError;

/// Creates `dir` (and its parents) readable by its owner only, and makes
/// an existing one so.
pub(crate) fn make_private_dir(dir: &Path) -> Result<(), SetupError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)))
        .map_err(|e| SetupError::Io(format!("creating {}: {e}", dir.display())))
}

/// Writes `text` to `path` readable by its owner only, through a
/// temporary file renamed into place, so a reader never sees half of it.
pub(crate) fn write_private(path: &Path, text: &str) -> Result<(), SetupError> {
    let io = |e: std::io::Error| SetupError::Io(format!("writing {}: {e}", path.display()));
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp_name);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}
