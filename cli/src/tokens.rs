//! Reading a bearer token from a file given on the command line.

use std::path::Path;

use anyhow::Context as _;

/// The token in `path` (surrounding whitespace removed), named after `flag` in errors.
///
/// # Errors
/// When the file cannot be read or holds no token.
pub(crate) fn read(path: &Path, flag: &str) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("failed to read {flag} {}", path.display()))?;
    let token = text.trim();
    anyhow::ensure!(!token.is_empty(), "{flag} {} is empty", path.display());
    anyhow::ensure!(
        token.bytes().all(|b| b.is_ascii_graphic()),
        "{flag} {} holds characters a bearer token cannot carry",
        path.display()
    );
    Ok(token.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_trimmed_and_checked() {
        let dir = std::env::temp_dir().join(format!("ringrift-tokens-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("t");
        std::fs::write(&f, "  abc\n").unwrap();
        assert_eq!(read(&f, "--x").unwrap(), "abc");
        std::fs::write(&f, "\n").unwrap();
        assert!(read(&f, "--x").unwrap_err().to_string().contains("--x"));
        std::fs::write(&f, "a b").unwrap();
        assert!(read(&f, "--x").is_err());
        assert!(read(&dir.join("missing"), "--x").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
