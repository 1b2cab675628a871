//! The log set-up of both binaries: `tracing` to stderr, filtered by a level or a filter
//! directive (`STS_LOG_LEVEL`), with colour only on a terminal.

/// Installs the global subscriber; a filter that does not parse falls back to `info`
/// (the configuration has already refused it with a clear message where it is checked).
pub fn init(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // No colour codes when the logs go to a file or a log driver (awslogs).
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}
