//! A secret given as a file (an ECS secret mounted as a file, or a file an init container
//! wrote): both binaries read their tokens this way.

use std::io::Read;
use std::path::Path;

/// The longest secret file read: tokens and keys are short, and a path that names a device
/// or a huge file must not fill memory.
pub const MAX_SECRET_FILE_BYTES: u64 = 64 << 10;

/// Why a secret file was not taken; none of them holds the file's contents.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    /// The file's own error; never its contents.
    #[error("{0}")]
    Unreadable(#[from] std::io::Error),
    /// Nothing but white space.
    #[error("the file is empty")]
    Empty,
    /// Over [`MAX_SECRET_FILE_BYTES`].
    #[error(
        "the file is larger than {MAX_SECRET_FILE_BYTES} bytes; it should hold only the secret"
    )]
    TooLarge,
    /// Bytes that are not UTF-8.
    #[error("the file is not UTF-8 text")]
    NotText,
}

/// The file's contents trimmed of surrounding white space; an empty file, or one over
/// [`MAX_SECRET_FILE_BYTES`], is an error.
pub fn read(path: &Path) -> Result<String, SecretFileError> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_SECRET_FILE_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_SECRET_FILE_BYTES {
        return Err(SecretFileError::TooLarge);
    }
    let text = String::from_utf8(bytes).map_err(|_| SecretFileError::NotText)?;
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
        std::fs::write(&path, vec![b'x'; MAX_SECRET_FILE_BYTES as usize + 1]).unwrap();
        assert!(matches!(read(&path), Err(SecretFileError::TooLarge)));
        assert!(matches!(
            read(Path::new("/dev/zero")),
            Err(SecretFileError::TooLarge)
        ));
        let missing = read(&dir.join("missing")).unwrap_err().to_string();
        assert!(missing.contains("No such file"), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
