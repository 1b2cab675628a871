//! Masks secrets in command lines before they leave the host.
//!
//! Rules, applied to each argument after the program name:
//! - `key=value` where `key` contains a sensitive word: the value is masked.
//! - an argument that contains a sensitive word and carries no `=` (`--password`,
//!   `-api-key`, `password`): the next argument is masked.
//! - per-program short flags: `-p<secret>` for the MySQL/MariaDB tools (a separate `-p`
//!   prompts, so the next argument is left alone), `-p <secret>` / `-p<secret>` for
//!   sshpass and the MongoDB shells, `-a <secret>` for redis-cli.
//! - a password in a URL's user part (`scheme://user:pass@host`) is masked.
//!
//! Matching is case-insensitive and by substring, so `DB_PASSWORD=x` and `--x-api_key=y`
//! are caught; over-masking is preferred to a leak.

pub(crate) const MASK: &str = "********";

pub(crate) const DEFAULT_SENSITIVE_WORDS: &[&str] = &[
    "password",
    "passwd",
    "mysql_pwd",
    "access_token",
    "auth_token",
    "api_key",
    "apikey",
    "api-key",
    "secret",
    "credentials",
    "stripetoken",
    "token",
];

/// (program names, flag, whether the value may come as the next argument)
const SHORT_FLAGS: &[(&[&str], &str, bool)] = &[
    (
        &[
            "mysql",
            "mysqldump",
            "mysqladmin",
            "mysqlimport",
            "mysqlshow",
            "mysqlcheck",
            "mariadb",
            "mariadb-dump",
        ],
        "-p",
        false,
    ),
    (
        &["sshpass", "mongo", "mongosh", "mongodump", "mongorestore"],
        "-p",
        true,
    ),
    (&["redis-cli"], "-a", true),
];

#[derive(Debug, Clone)]
pub(crate) struct Scrubber {
    words: Vec<String>,
}

impl Default for Scrubber {
    fn default() -> Self {
        Self::new(&[])
    }
}

impl Scrubber {
    pub(crate) fn new(extra_words: &[String]) -> Self {
        let words = DEFAULT_SENSITIVE_WORDS
            .iter()
            .map(|w| w.to_string())
            .chain(extra_words.iter().map(|w| w.trim().to_ascii_lowercase()))
            .filter(|w| !w.is_empty())
            .collect();
        Self { words }
    }

    fn is_sensitive(&self, name: &str) -> bool {
        let lower = name.to_ascii_lowercase();
        self.words.iter().any(|w| lower.contains(w.as_str()))
    }

    /// Masks secrets in place.
    pub(crate) fn scrub(&self, args: &mut [String]) {
        let program = args
            .first()
            .map(|a| a.rsplit('/').next().unwrap_or(a).to_string())
            .unwrap_or_default();
        let short_flag = SHORT_FLAGS
            .iter()
            .find(|(programs, _, _)| programs.contains(&program.as_str()))
            .map(|(_, flag, separate)| (*flag, *separate));
        let mut mask_next = false;
        for arg in args.iter_mut().skip(1) {
            if std::mem::take(&mut mask_next) {
                *arg = MASK.into();
                continue;
            }
            mask_url_password(arg);
            if let Some((key, _)) = arg.split_once('=') {
                if self.is_sensitive(key) {
                    *arg = format!("{key}={MASK}");
                }
                continue;
            }
            if self.is_sensitive(arg) {
                mask_next = true;
                continue;
            }
            if let Some((flag, separate)) = short_flag {
                if arg == flag {
                    mask_next = separate;
                } else if arg.len() > flag.len() && arg.starts_with(flag) {
                    *arg = format!("{flag}{MASK}");
                }
            }
        }
    }
}

fn mask_url_password(arg: &mut String) {
    let Some(scheme_end) = arg.find("://") else {
        return;
    };
    let rest_start = scheme_end + 3;
    let authority_end = arg[rest_start..]
        .find(['/', '?', '#', ' '])
        .map_or(arg.len(), |i| rest_start + i);
    let Some(at) = arg[rest_start..authority_end].rfind('@') else {
        return;
    };
    let userinfo = &arg[rest_start..rest_start + at];
    if let Some(colon) = userinfo.find(':') {
        let start = rest_start + colon + 1;
        arg.replace_range(start..rest_start + at, MASK);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrubbed(cmdline: &[&str]) -> Vec<String> {
        scrubbed_with(&[], cmdline)
    }

    fn scrubbed_with(extra: &[&str], cmdline: &[&str]) -> Vec<String> {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let mut args: Vec<String> = cmdline.iter().map(|s| s.to_string()).collect();
        Scrubber::new(&extra).scrub(&mut args);
        args
    }

    #[test]
    fn key_value_arguments() {
        assert_eq!(
            scrubbed(&[
                "app",
                "--password=hunter2",
                "--user=bob",
                "api_key=abc",
                "DB_PASSWD=x"
            ]),
            [
                "app",
                "--password=********",
                "--user=bob",
                "api_key=********",
                "DB_PASSWD=********"
            ]
        );
        assert_eq!(
            scrubbed(&[
                "java",
                "-Dsts.apiKey=abc",
                "-Dauth_token=t",
                "-jar",
                "a.jar"
            ]),
            [
                "java",
                "-Dsts.apiKey=********",
                "-Dauth_token=********",
                "-jar",
                "a.jar"
            ]
        );
    }

    #[test]
    fn flag_then_value() {
        assert_eq!(
            scrubbed(&["app", "--password", "hunter2", "--port", "80"]),
            ["app", "--password", "********", "--port", "80"]
        );
        assert_eq!(
            scrubbed(&["app", "--client-secret", "s", "-token", "t", "x"]),
            [
                "app",
                "--client-secret",
                "********",
                "-token",
                "********",
                "x"
            ]
        );
        assert_eq!(
            scrubbed(&["mysqladmin", "password", "newpass"]),
            ["mysqladmin", "password", "********"]
        );
        // A sensitive flag at the very end has nothing to mask.
        assert_eq!(scrubbed(&["app", "--password"]), ["app", "--password"]);
    }

    #[test]
    fn known_short_flags() {
        assert_eq!(
            scrubbed(&["/usr/bin/mysql", "-u", "root", "-phunter2", "db"]),
            ["/usr/bin/mysql", "-u", "root", "-p********", "db"]
        );
        // mysql's separate -p prompts; the next argument is the database.
        assert_eq!(scrubbed(&["mysql", "-p", "db"]), ["mysql", "-p", "db"]);
        assert_eq!(
            scrubbed(&["sshpass", "-p", "hunter2", "ssh", "host"]),
            ["sshpass", "-p", "********", "ssh", "host"]
        );
        assert_eq!(
            scrubbed(&["redis-cli", "-h", "h", "-a", "pw"]),
            ["redis-cli", "-h", "h", "-a", "********"]
        );
        // -p of another program is a port.
        assert_eq!(scrubbed(&["nc", "-p", "8080"]), ["nc", "-p", "8080"]);
    }

    #[test]
    fn url_credentials() {
        assert_eq!(
            scrubbed(&["app", "postgres://bob:hunter2@db:5432/x", "http://h/p@q"]),
            ["app", "postgres://bob:********@db:5432/x", "http://h/p@q"]
        );
        assert_eq!(
            scrubbed(&["app", "--db=postgres://bob:pw@db/x"]),
            ["app", "--db=postgres://bob:********@db/x"]
        );
    }

    #[test]
    fn extra_words_and_case() {
        assert_eq!(
            scrubbed_with(
                &["Pin"],
                &["app", "--PIN", "1234", "--pin-code=99", "--Password=x"]
            ),
            [
                "app",
                "--PIN",
                "********",
                "--pin-code=********",
                "--Password=********"
            ]
        );
    }

    #[test]
    fn program_name_is_never_masked() {
        assert_eq!(scrubbed(&["secret-santa", "run"]), ["secret-santa", "run"]);
        assert!(scrubbed(&[]).is_empty());
    }
}
