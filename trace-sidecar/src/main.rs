//! trace-sidecar: the span receiver that runs beside an application.
//! The receiver and relay are built by the trace-pipeline issue; until then the binary
//! only reports that it is not functional, so nobody deploys it by mistake.

fn main() {
    eprintln!(
        "trace-sidecar {}: the span receiver is not built yet",
        env!("CARGO_PKG_VERSION")
    );
    std::process::exit(2);
}
