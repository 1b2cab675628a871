//! What can go wrong with the disk queue. Every message names the file or directory.

use std::io;
use std::path::PathBuf;

use super::record::RecordId;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("{}: cannot {op}: {source}", path.display())]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{}: in use by another process (it holds the lock file)", dir.display())]
    Locked { dir: PathBuf },
    #[error("record of {len} bytes refused: the limit is {limit} bytes")]
    TooLarge { len: usize, limit: usize },
    #[error("cannot acknowledge the record at {id}: it is not the oldest one")]
    OutOfOrder { id: RecordId },
    #[error("{}: {reason}", dir.display())]
    InvalidOptions { dir: PathBuf, reason: String },
}

/// `map_err(io_err(path, "read"))`.
pub(super) fn io_err<'a>(
    path: impl Into<PathBuf> + 'a,
    op: &'static str,
) -> impl FnOnce(io::Error) -> QueueError + 'a {
    move |source| QueueError::Io {
        path: path.into(),
        op,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_path_and_the_limit() {
        let e = io_err("/var/lib/sts/queue/00000000000000000001.seg", "write")(
            io::Error::from_raw_os_error(28),
        );
        let text = e.to_string();
        assert!(
            text.starts_with("/var/lib/sts/queue/00000000000000000001.seg: cannot write: "),
            "{text}"
        );
        assert!(text.contains("No space left on device"), "{text}");
        let e = QueueError::TooLarge {
            len: 70_000_000,
            limit: 67_108_864,
        };
        assert_eq!(
            e.to_string(),
            "record of 70000000 bytes refused: the limit is 67108864 bytes"
        );
    }
}
