//! Writing keys and certificates: through a temporary sibling and a rename (a reader never sees
//! half a file), private keys and credentials with mode 0600 from the moment they exist.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// A key or certificate file that could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("failed to {action} {path}: {source}")]
pub struct FileError {
    /// `read` or `write`.
    pub action: &'static str,
    /// The file.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

/// The text of `path`.
///
/// # Errors
/// [`FileError`] naming the file.
pub fn read(path: &Path) -> Result<String, FileError> {
    std::fs::read_to_string(path).map_err(|source| FileError {
        action: "read",
        path: path.to_owned(),
        source,
    })
}

/// Writes `text` to `path`: owner-only (0600) when `private` (keys), else readable by all
/// (certificates).
///
/// # Errors
/// [`FileError`] naming the file.
pub fn store(path: &Path, text: &str, private: bool) -> Result<(), FileError> {
    let written = if private {
        write_private(path, text.as_bytes())
    } else {
        write_public(path, text.as_bytes())
    };
    written.map_err(|source| FileError {
        action: "write",
        path: path.to_owned(),
        source,
    })
}

/// Writes `contents` to `path` readable by its owner only (0600), creating the directory
/// (0700) if needed.
///
/// # Errors
/// When the directory or the file cannot be written.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    write(path, contents, 0o600)
}

/// Writes `contents` to `path` readable by everyone (0644): certificates.
///
/// # Errors
/// When the directory or the file cannot be written.
pub fn write_public(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    write(path, contents, 0o644)
}

fn write(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp_name);
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        // create_new honours the umask; set the mode meant.
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_files_are_0600_and_replace_whole() {
        let dir = std::env::temp_dir().join(format!("ringrift-tls-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let key = dir.join("pki").join("ca.key");
        write_private(&key, b"one").unwrap();
        write_private(&key, b"two").unwrap();
        assert_eq!(std::fs::read(&key).unwrap(), b"two");
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = std::fs::metadata(dir.join("pki")).unwrap().permissions().mode() & 0o777;
        assert_eq!(dir_mode, 0o700);
        let cert = dir.join("pki").join("ca.crt");
        write_public(&cert, b"c").unwrap();
        assert_eq!(
            std::fs::metadata(&cert).unwrap().permissions().mode() & 0o777,
            0o644
        );
        let leftovers: Vec<_> = std::fs::read_dir(dir.join("pki"))
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
