//! `ticketing history <type>:<id>`: an aggregate's events as the API's
//! history endpoints list them (an order's with its payments'), for an
//! operator answering "what happened to this order?": any aggregate, no
//! ownership check and nothing left out, since it runs with database
//! access.
//!
//! Exit codes: 0 printed, 1 failed (no such aggregate, or none yet at
//! `--as-of`; the database unreachable), 2 usage error.

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::Args;
use serde_json::Value;
use ticketing_projections::AggregateKind;
use ticketing_relay::{read_aggregate_history, AggregateHistoryEvent, AggregateHistoryQuery};

use super::database::DatabaseArg;
use super::replay::parse_aggregate;

/// Events read per query; a history is read to its end.
const PAGE: i64 = 1_000;

const AFTER_HELP: &str = "\
Examples:
  ticketing history order:0198c0de-…             the order and its payments, as a table
  ticketing history ticket:0198c0de-… --json     the JSON array the API answers
  ticketing history order:0198c0de-… --as-of 2025-01-31T12:00:00Z

Exit codes:
  0  printed
  1  failed: no events of that aggregate (at --as-of), or the database unreachable
  2  usage error: not TYPE:ID, an unknown type, a malformed time";

#[derive(Debug, Args)]
#[command(after_help = AFTER_HELP, after_long_help = AFTER_HELP)]
pub(crate) struct Arg {
    #[command(flatten)]
    database: DatabaseArg,

    /// The aggregate: `ticket:<id>`, `order:<id>` (with its payments) or
    /// `payment:<id>`.
    #[arg(value_name = "TYPE:ID", value_parser = aggregate)]
    aggregate: (AggregateKind, String),

    /// Only the events recorded at or before this RFC 3339 time.
    #[arg(long, value_name = "TIME", value_parser = rfc3339)]
    as_of: Option<DateTime<Utc>>,

    /// Print the JSON array the API's history endpoint answers (every
    /// event as published on its topic) instead of a table.
    #[arg(long)]
    json: bool,
}

fn aggregate(value: &str) -> Result<(AggregateKind, String), String> {
    parse_aggregate(value).map_err(|error| error.to_string())
}

fn rfc3339(value: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(value)
        .map(|at| at.with_timezone(&Utc))
        .map_err(|error| format!("not an RFC 3339 time ({error}), e.g. 2025-01-31T12:00:00Z"))
}

impl Arg {
    pub(crate) async fn main(self) -> anyhow::Result<()> {
        let (kind, id) = &self.aggregate;
        let pool = self.database.connect(false).await?;
        let mut conn = pool
            .acquire()
            .await
            .context("Failed to connect to the database")?;
        let mut events: Vec<AggregateHistoryEvent> = Vec::new();
        loop {
            let query = AggregateHistoryQuery {
                aggregate_type: kind.type_name(),
                aggregate_id: id,
                after_position: events.last().map_or(0, |e| {
                    i64::try_from(e.global_position()).unwrap_or(i64::MAX)
                }),
                until: self.as_of,
                limit: PAGE,
            };
            let page = read_aggregate_history(&mut conn, &query)
                .await
                .context("Failed to read the history")?;
            let full = i64::try_from(page.len()).is_ok_and(|n| n == PAGE);
            events.extend(page);
            if !full {
                break;
            }
        }
        let name = format!("{}:{id}", kind.type_name().to_ascii_lowercase());
        if events.is_empty() {
            match self.as_of {
                Some(at) => anyhow::bail!("{name} has no events at or before {at}"),
                None => anyhow::bail!("{name} has no events"),
            }
        }
        let items = events
            .iter()
            .map(|event| serde_json::to_value(&event.envelope))
            .collect::<Result<Vec<Value>, _>>()
            .context("Failed to serialise the events")?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&items)?);
        } else {
            print!("{}", table(&items));
        }
        Ok(())
    }
}

const COLUMNS: [&str; 9] = [
    "POSITION",
    "SEQ",
    "RECORDED AT",
    "AGGREGATE",
    "EVENT",
    "SCHEMA",
    "CORRELATION",
    "CAUSATION",
    "DATA",
];

/// One line per event, columns aligned; the payload last, as compact JSON.
fn table(items: &[Value]) -> String {
    let text = |item: &Value, key: &str| match item.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "-".to_owned(),
        Some(other) => other.to_string(),
    };
    let rows: Vec<[String; 9]> = items
        .iter()
        .map(|item| {
            [
                text(item, "globalPosition"),
                text(item, "sequence"),
                text(item, "timestamp"),
                format!(
                    "{}:{}",
                    text(item, "aggregateType"),
                    text(item, "aggregateId")
                ),
                text(item, "eventType"),
                text(item, "schemaVersion"),
                text(item, "correlationId"),
                text(item, "causationId"),
                text(item, "data"),
            ]
        })
        .collect();
    let mut widths = COLUMNS.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 9]| {
        let mut line = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  "));
            }
        }
        line.push('\n');
        line
    };
    let mut out = line(COLUMNS);
    for row in &rows {
        out.push_str(&line(row.each_ref().map(String::as_str)));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::table;
    use serde_json::json;

    #[test]
    fn the_table_aligns_one_event_per_line_with_its_payload_last() {
        let items = [
            json!({
                "globalPosition": 7, "sequence": 1, "timestamp": "2030-01-01T00:00:00Z",
                "aggregateType": "Order", "aggregateId": "o-1", "eventType": "OrderPlaced",
                "schemaVersion": "1.0.0", "correlationId": "req-1", "causationId": "req-1",
                "data": { "userId": "u-1" }
            }),
            json!({
                "globalPosition": 12, "sequence": 1, "timestamp": "2030-01-01T00:00:01Z",
                "aggregateType": "Payment", "aggregateId": "p-1",
                "eventType": "PaymentRequested", "schemaVersion": "1.0.0",
                "correlationId": null, "causationId": "timer-1", "data": {}
            }),
        ];

        let table = table(&items);

        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert!(
            lines[0].starts_with("POSITION  SEQ  RECORDED AT"),
            "{table}"
        );
        assert!(lines[1].ends_with(r#"{"userId":"u-1"}"#), "{table}");
        assert!(lines[2].contains("Payment:p-1"), "{table}");
        assert!(lines[2].contains("PaymentRequested"), "{table}");
        // An absent correlation id is a dash, and columns line up.
        assert!(lines[2].contains("  -  "), "{table}");
        assert_eq!(
            lines[1].find("OrderPlaced"),
            lines[2].find("PaymentRequested")
        );
    }
}
