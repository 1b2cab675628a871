//! Groups processes by network namespace: the inode of the `/proc/<pid>/ns/net` link.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;

/// Process ids by namespace inode; the pids of each namespace in ascending order.
pub(crate) type Groups = BTreeMap<u64, Vec<u32>>;

/// Lists /proc once. Processes that vanish meanwhile, or whose link cannot be read, are
/// left out.
pub(crate) fn group_by_netns() -> io::Result<Groups> {
    let mut groups = Groups::new();
    let mut path = String::with_capacity(32);
    for pid in crate::collect::proc_files::pids()? {
        path.clear();
        let _ = write!(path, "/proc/{pid}/ns/net");
        if let Some(ns) = netns_of(&path) {
            groups.entry(ns).or_default().push(pid);
        }
    }
    for pids in groups.values_mut() {
        pids.sort_unstable();
    }
    Ok(groups)
}

/// The namespace inode a `/proc/<pid>/ns/net` link names.
pub(crate) fn netns_of(link: &str) -> Option<u64> {
    let target = std::fs::read_link(link).ok()?;
    parse_link(target.to_str()?)
}

/// `net:[4026531840]` -> 4026531840.
pub(crate) fn parse_link(target: &str) -> Option<u64> {
    target
        .strip_prefix("net:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_targets() {
        assert_eq!(parse_link("net:[4026531840]"), Some(4_026_531_840));
        assert_eq!(parse_link("mnt:[4026531840]"), None);
        assert_eq!(parse_link("net:[x]"), None);
    }

    #[test]
    fn this_process_is_in_its_namespace_group() {
        let own = netns_of("/proc/self/ns/net").expect("own namespace");
        let groups = group_by_netns().unwrap();
        assert!(groups[&own].contains(&std::process::id()));
    }
}
