//! JSON log lines with the trace and span ids of the span they were written
//! in, so a log line leads to its trace and back.

use std::fmt;

use opentelemetry::trace::TraceContextExt;
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{Format, Json, JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent};
use tracing_subscriber::registry::LookupSpan;

/// tracing-subscriber's JSON lines plus `trace_id` and `span_id`.
pub(super) struct JsonWithTraceIds {
    inner: Format<Json>,
}

impl Default for JsonWithTraceIds {
    fn default() -> Self {
        Self {
            inner: tracing_subscriber::fmt::format().json(),
        }
    }
}

impl<S> FormatEvent<S, JsonFields> for JsonWithTraceIds
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        // The OpenTelemetry layer activates the context of the span it
        // enters, so the current context is the event's span's.
        let context = opentelemetry::Context::current();
        let span = context.span();
        let ids = span.span_context();
        let object = line.trim_end();
        match object.strip_suffix('}') {
            Some(fields) if ids.is_valid() && fields.len() > 1 => writeln!(
                writer,
                "{fields},\"trace_id\":\"{}\",\"span_id\":\"{}\"}}",
                ids.trace_id(),
                ids.span_id()
            ),
            _ => writer.write_str(&line),
        }
    }
}
