use tracing_subscriber::EnvFilter;

/// Logs to stdout, filtered by RUST_LOG (default `info`); `json` switches to
/// structured lines for log shippers.
pub(crate) fn init(format: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if format.eq_ignore_ascii_case("json") {
        builder.json().init();
    } else {
        builder.init();
    }
}
