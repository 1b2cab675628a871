//! A secret given as a file (an ECS secret mounted as a file, or a file an init container
//! wrote): both binaries read their tokens this way.

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    /// The file's own error; never its contents.
    #[error("{0}")]
    Unreadable(#[from] std::io::Error),
    #[error("the file is empty")]
    Empty,
}

/// The file's contents trimmed of surrounding white space; an empty file is an error.
pub fn read(path: &Path) -> Result<String, SecretFileError> {
    let text = std::fs::read_to_string(path)?;
    match text.trim() {
        "" => Err(SecretFileError::Empty),
        secret => Ok(secret.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trimmed_and_never_empty() {
        let dir = std::env::temp_dir().join(format!("sts-secret-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        std::fs::write(&path, "  s3cret\n").unwrap();
        assert_eq!(read(&path).unwrap(), "s3cret");
        std::fs::write(&path, " \n\t").unwrap();
        assert!(matches!(read(&path), Err(SecretFileError::Empty)));
        let missing = read(&dir.join("missing")).unwrap_err().to_string();
        assert!(missing.contains("No such file"), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
