//! User names by uid, from /etc/passwd, re-read at most once per cycle on a miss.

use std::collections::HashMap;

#[derive(Debug, Default)]
pub(crate) struct Users {
    names: HashMap<u32, String>,
    reloaded_this_cycle: bool,
}

impl Users {
    pub(crate) fn start_cycle(&mut self) {
        self.reloaded_this_cycle = false;
    }

    /// The user name, or the uid as text when no passwd entry names it.
    pub(crate) fn name(&mut self, uid: u32) -> String {
        if !self.names.contains_key(&uid) && !self.reloaded_this_cycle {
            self.reloaded_this_cycle = true;
            self.names = std::fs::read_to_string("/etc/passwd")
                .map(|text| parse_passwd(&text))
                .unwrap_or_default();
        }
        self.names
            .get(&uid)
            .cloned()
            .unwrap_or_else(|| uid.to_string())
    }
}

fn parse_passwd(text: &str) -> HashMap<u32, String> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.split(':');
            let name = parts.next()?;
            let uid = parts.nth(1)?.parse().ok()?;
            Some((uid, name.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_lines() {
        let map = parse_passwd(
            "root:x:0:0:root:/root:/bin/bash\nbad line\nbob:x:1000:1000::/home/bob:/bin/sh\n",
        );
        assert_eq!(map.get(&0).map(String::as_str), Some("root"));
        assert_eq!(map.get(&1000).map(String::as_str), Some("bob"));
        assert_eq!(map.len(), 2);
    }

    #[test]
    fn unknown_uid_falls_back_to_number() {
        let mut users = Users::default();
        users.start_cycle();
        assert_eq!(users.name(0), "root");
        assert_eq!(users.name(4_000_000_000), "4000000000");
    }
}
