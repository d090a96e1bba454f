//! Logs, traces and metrics of the process, set up once in `main`.
//!
//! - Logs go to stdout, filtered by `RUST_LOG`: human-readable, or JSON
//!   lines carrying `trace_id` and `span_id` (`LOG_FORMAT=json`).
//! - Spans are exported over OTLP only when an endpoint is configured
//!   (`OTEL_EXPORTER_OTLP_ENDPOINT` or `..._TRACES_ENDPOINT`; the other
//!   standard `OTEL_*` variables apply). Export runs on the batch
//!   processor's own thread with a bounded queue: a slow or absent collector
//!   drops spans, it never holds up a request. Without an endpoint there is
//!   no OpenTelemetry layer at all: its bookkeeping of spans nobody reads
//!   cost about a sixth of the write throughput under load
//!   (docs/benchmarks.md), so then logs carry no trace ids and no `traceparent` is
//!   stored or sent.
//! - Metrics go through the `metrics` facade to one Prometheus recorder;
//!   every role serves them at `/metrics`.

mod json_log;
mod prometheus;
mod traces;

use anyhow::Context;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

pub(crate) use self::prometheus::metrics_render;

/// Flushes the spans still queued when dropped.
pub(crate) struct TelemetryGuard {
    tracer_provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = &self.tracer_provider {
            if let Err(error) = provider.shutdown() {
                eprintln!("Failed to flush the remaining spans: {error}");
            }
        }
    }
}

/// Spans exported unless `TRACES_FILTER` says otherwise: the exporter's own
/// HTTP/gRPC stack is left out, so that exporting makes no spans to export.
const DEFAULT_TRACES_FILTER: &str = "info,h2=off,hyper=off,hyper_util=off,tonic=off,tower=off,reqwest=off,opentelemetry=off,opentelemetry_sdk=off,opentelemetry_otlp=off";

/// Installs the subscriber (logs and spans) and the metrics recorder.
/// `service` names the process in traces unless `OTEL_SERVICE_NAME` does.
/// Logs are filtered by `RUST_LOG`, spans by `TRACES_FILTER`: quiet logs
/// must not cost the traces.
pub(crate) fn init(log_format: &str, service: &str) -> anyhow::Result<TelemetryGuard> {
    let tracer_provider = traces::tracer_provider(service)?;
    let otel = tracer_provider.as_ref().map(|provider| {
        let traces_filter = EnvFilter::try_from_env("TRACES_FILTER")
            .unwrap_or_else(|_| EnvFilter::new(DEFAULT_TRACES_FILTER));
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("ticketing"))
            .with_tracked_inactivity(false)
            .with_filter(traces_filter)
    });
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = if log_format.eq_ignore_ascii_case("json") {
        tracing_subscriber::fmt::layer()
            .json()
            .event_format(json_log::JsonWithTraceIds::default())
            .boxed()
    } else {
        tracing_subscriber::fmt::layer().boxed()
    };
    tracing_subscriber::registry()
        .with(otel)
        .with(fmt.with_filter(filter))
        .try_init()
        .context("Failed to install the tracing subscriber")?;
    prometheus::install().context("Failed to install the metrics recorder")?;
    Ok(TelemetryGuard { tracer_provider })
}
