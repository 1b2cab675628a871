//! Reading small /proc files into one reused buffer, and the `Key: value` parsing they share.

use std::fs::File;
use std::io::{self, Read};

/// Reads files into a buffer that is kept between reads, so a scan of thousands of
/// /proc files allocates nothing per file.
#[derive(Debug, Default)]
pub(crate) struct FileReader {
    buf: Vec<u8>,
}

impl FileReader {
    pub(crate) fn read(&mut self, path: &str) -> io::Result<&[u8]> {
        self.buf.clear();
        File::open(path)?.read_to_end(&mut self.buf)?;
        Ok(&self.buf)
    }

    pub(crate) fn read_str(&mut self, path: &str) -> io::Result<&str> {
        let bytes = self.read(path)?;
        std::str::from_utf8(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

/// The pids listed in /proc (its numeric entries), in directory order.
pub(crate) fn pids() -> io::Result<impl Iterator<Item = u32>> {
    Ok(std::fs::read_dir("/proc")?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok()))
}

/// The first whitespace-separated number after `key` in a `Key: value ...` file
/// (/proc/meminfo, /proc/<pid>/io, /proc/<pid>/status).
pub fn keyed_u64(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_values() {
        let text = "MemTotal:       16316412 kB\nMemFree:  100 kB\nUid:\t1000\t1000\t0\t0\n";
        assert_eq!(keyed_u64(text, "MemTotal"), Some(16_316_412));
        assert_eq!(keyed_u64(text, "MemFree"), Some(100));
        assert_eq!(keyed_u64(text, "Uid"), Some(1000));
        assert_eq!(keyed_u64(text, "Mem"), None);
        assert_eq!(keyed_u64(text, "Swap"), None);
    }

    #[test]
    fn missing_file_is_an_error_not_a_panic() {
        let mut reader = FileReader::default();
        assert!(reader.read("/proc/does-not-exist/stat").is_err());
        assert!(!reader.read("/proc/self/stat").unwrap().is_empty());
    }
}
