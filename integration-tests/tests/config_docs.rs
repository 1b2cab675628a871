//! The configuration tables in README.md are made from the keys the code knows:
//! node-daemon's `config::keys` and trace-sidecar's `config::keys`. A table that differs
//! fails this test; with `STS_UPDATE_DOCS=1` the test writes the tables into the README.

use std::path::Path;

const REGENERATE: &str = "STS_UPDATE_DOCS=1 cargo test -p integration-tests --test config_docs";

fn table<'a>(rows: impl Iterator<Item = (&'a str, String, &'a str)>) -> String {
    let mut out = String::from("| variable | default | meaning |\n|---|---|---|\n");
    for (name, default, doc) in rows {
        assert!(
            !default.contains('|') && !doc.contains('|'),
            "{name}: a `|` would cut its row"
        );
        out.push_str(&format!("| `{name}` | {default} | {doc} |\n"));
    }
    out
}

fn daemon_table() -> String {
    table(
        node_daemon::config::keys::KEYS
            .iter()
            .map(|key| (key.name, key.default_doc(), key.doc)),
    )
}

fn sidecar_table() -> String {
    table(
        trace_sidecar::config::keys::KEYS
            .iter()
            .map(|key| (key.name, key.default.to_string(), key.doc)),
    )
}

/// `text` with the lines between the marker comments of `name` replaced by `table`.
fn splice(text: &str, name: &str, table: &str) -> String {
    let begin = format!("<!-- config-table {name}");
    let end = format!("<!-- end config-table {name} -->");
    let start = text
        .find(&begin)
        .unwrap_or_else(|| panic!("README.md has no `{begin} ...-->` line"));
    let body = start + text[start..].find('\n').expect("a line after the marker") + 1;
    let stop = body
        + text[body..]
            .find(&end)
            .unwrap_or_else(|| panic!("README.md has no `{end}` after `{begin}`"));
    format!("{}{table}{}", &text[..body], &text[stop..])
}

#[test]
fn readme_tables_are_what_the_code_knows() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let text = std::fs::read_to_string(&path).expect("README.md");
    let made = splice(
        &splice(&text, "node-daemon", &daemon_table()),
        "trace-sidecar",
        &sidecar_table(),
    );
    if std::env::var_os("STS_UPDATE_DOCS").is_some() {
        if made != text {
            std::fs::write(&path, &made).expect("write README.md");
            println!("rewrote the configuration tables in {}", path.display());
        }
        return;
    }
    let differs = made
        .lines()
        .zip(text.lines())
        .find(|(want, have)| want != have)
        .map_or_else(
            || "the tables differ in length".to_string(),
            |(want, have)| format!("README.md has\n  {have}\nwhere the code makes\n  {want}"),
        );
    assert!(
        made == text,
        "the configuration tables in README.md are not what the code knows; run `{REGENERATE}`.\n{differs}"
    );
}

#[test]
fn splice_replaces_only_between_the_markers() {
    let text = "a\n<!-- config-table x: note -->\nold\n<!-- end config-table x -->\nb\n";
    assert_eq!(
        splice(text, "x", "new\n"),
        "a\n<!-- config-table x: note -->\nnew\n<!-- end config-table x -->\nb\n"
    );
}
