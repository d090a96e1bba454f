//! The OpenTelemetry tracer provider: OTLP export when configured.

use std::env;

use anyhow::Context;
use opentelemetry::KeyValue;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;

/// With an OTLP endpoint: a batch exporter, sampling as the standard
/// `OTEL_TRACES_SAMPLER`/`_ARG` say (parent-based always-on by default).
/// Without: none (spans are then not even given ids).
pub(super) fn tracer_provider(service: &str) -> anyhow::Result<Option<SdkTracerProvider>> {
    let builder = SdkTracerProvider::builder().with_resource(resource(service));
    if !export_configured() {
        return Ok(None);
    }
    // The protocol comes from OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL:
    // `http/protobuf` (port 4318, the default) or `grpc` (port 4317).
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .build()
        .context("Failed to configure the OTLP span exporter")?;
    Ok(Some(builder.with_batch_exporter(exporter).build()))
}

fn resource(service: &str) -> Resource {
    let mut resource = Resource::builder()
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    if env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(service.to_owned());
    }
    resource.build()
}

/// Export is off unless an endpoint is set, and the standard switches
/// (`OTEL_SDK_DISABLED=true`, `OTEL_TRACES_EXPORTER=none`) turn it off.
fn export_configured() -> bool {
    let set = |name: &str| env::var(name).is_ok_and(|value| !value.trim().is_empty());
    let is = |name: &str, value: &str| {
        env::var(name).is_ok_and(|v| v.trim().eq_ignore_ascii_case(value))
    };
    if is("OTEL_SDK_DISABLED", "true") || is("OTEL_TRACES_EXPORTER", "none") {
        return false;
    }
    set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
}
