//! `ticketing replay rebuild|republish|verify|dlq`: the operator's tools
//! over the event store and the topics. Each long run shows a progress bar
//! (rate and ETA) on stderr, stops cleanly on Ctrl-C and resumes when run
//! again.
//!
//! Exit codes: 0 done, 1 failed, 2 usage error (clap), 3 `verify` found
//! read-model rows differing from the event store (repaired with
//! `--repair`), 130 interrupted by Ctrl-C/SIGTERM with its progress saved
//! (run the same command to resume).

use std::process::ExitCode;

use anyhow::Context;
use clap::{ArgGroup, Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ticketing_projections::rebuild::{RebuildOutcome, RebuildPlan, Rebuilder};
use ticketing_projections::reconcile::sweep::verify;
use ticketing_projections::redrive::{DeadLetterQueue, RedriveError, RedriveOutcome};
use ticketing_projections::{AggregateKind, ProjectionConfig};
use ticketing_relay::{
    topic_version, HistoryFilter, RepublishOutcome, RepublishPlan, Republisher, Topics,
};
use tokio_util::sync::CancellationToken;

use super::database::DatabaseArg;
use super::relay::KafkaArgs;
use crate::shutdown::shutdown_signal;

/// Exit code of a run stopped by a signal, by shell convention (128 + SIGINT).
const EXIT_INTERRUPTED: u8 = 130;

/// Exit code of a `verify` that found differences.
const EXIT_DIFFERENCES: u8 = 3;

#[derive(Debug, Args)]
pub(crate) struct Arg {
    #[command(flatten)]
    database: DatabaseArg,

    #[command(flatten)]
    relay: KafkaArgs,

    /// Say what would be done (and how much), change nothing.
    #[arg(long, global = true)]
    dry_run: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Rebuild read models from the event store into shadow tables, then
    /// swap them in atomically; queries keep answering meanwhile.
    Rebuild(RebuildArg),
    /// Publish stored events again (same eventIds, so consumers
    /// deduplicate), to the usual topics or to a new topic version.
    Republish(RepublishArg),
    /// Compare every read-model row with the event store (each
    /// aggregate's last sequence, up to what the relay has published) and
    /// list the rows that differ; exits 3 if any do. With `--repair`, heal
    /// them from the store as the projection workers would.
    Verify(VerifyArg),
    /// Inspect or re-drive the dead-letter topics (`<topic>.dlq`).
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
}

#[derive(Debug, Args)]
struct VerifyArg {
    /// Heal the rows that differ (missing or behind: the missing events
    /// applied; ahead or without events: folded again or removed).
    #[arg(long)]
    repair: bool,

    /// Aggregates compared per query (and per repair transaction).
    #[arg(long, default_value_t = 1_000)]
    batch_size: i64,

    /// Print the report as JSON on stdout instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum View {
    Tickets,
    Orders,
    Payments,
    All,
}

impl View {
    fn kinds(self) -> Vec<AggregateKind> {
        match self {
            View::Tickets => vec![AggregateKind::Ticket],
            View::Orders => vec![AggregateKind::Order],
            View::Payments => vec![AggregateKind::Payment],
            View::All => vec![
                AggregateKind::Ticket,
                AggregateKind::Order,
                AggregateKind::Payment,
            ],
        }
    }
}

#[derive(Debug, Args)]
struct RebuildArg {
    /// The read model to rebuild.
    #[arg(long, value_enum, default_value_t = View::All)]
    view: View,

    /// Events read per batch (the progress step); rows are committed with
    /// the checkpoint at least once a minute and at the end.
    #[arg(long, env = "REPLAY_BATCH_SIZE", default_value_t = 20_000)]
    batch_size: u32,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("source").required(true).args(["from_position", "aggregate"])))]
struct RepublishArg {
    /// Republish every event at or after this global position.
    #[arg(long, value_name = "N")]
    from_position: Option<i64>,

    /// Republish one aggregate's events, e.g. `order:3f2a…`.
    #[arg(long, value_name = "TYPE:ID")]
    aggregate: Option<String>,

    /// Publish to this topic version instead (`v2`: ticketing.orders.v1
    /// becomes ticketing.orders.v2).
    #[arg(long, value_name = "VERSION", conflicts_with = "to_topic")]
    topic_suffix: Option<String>,

    /// Publish every event to this one topic instead.
    #[arg(long, value_name = "TOPIC")]
    to_topic: Option<String>,

    /// Events sent per batch (the checkpoint moves once a batch is acked).
    #[arg(long, env = "REPLAY_BATCH_SIZE", default_value_t = 2_000)]
    batch_size: u32,
}

#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// List the dead letters not yet re-driven, with why they were parked.
    List(DlqArg),
    /// Send the dead letters back to the topics they came from.
    Redrive(DlqArg),
}

#[derive(Debug, Args)]
struct DlqArg {
    /// One DLQ topic; by default those of the three event topics.
    #[arg(long)]
    topic: Option<String>,

    /// Consumer group recording what was re-driven.
    #[arg(
        long,
        env = "DLQ_REDRIVE_GROUP_ID",
        default_value = "ticketing-dlq-redrive"
    )]
    group_id: String,

    /// `list`: print the dead letters as one JSON array on stdout (each
    /// with its topic), for scripts.
    #[arg(long)]
    json: bool,
}

impl Arg {
    pub(crate) async fn main(self) -> anyhow::Result<ExitCode> {
        let stop = CancellationToken::new();
        let signal = stop.clone();
        let _signals = tokio::spawn(async move {
            shutdown_signal().await;
            eprintln!("stopping after the current batch…");
            signal.cancel();
        });
        let interrupted = match &self.command {
            Command::Rebuild(arg) => self.rebuild(arg, &stop).await?,
            Command::Republish(arg) => self.republish(arg, &stop).await?,
            Command::Verify(arg) => return self.verify(arg).await,
            Command::Dlq { command } => self.dlq(command, &stop).await?,
        };
        if interrupted {
            eprintln!("interrupted; progress is saved: run the same command again to resume");
            return Ok(ExitCode::from(EXIT_INTERRUPTED));
        }
        Ok(ExitCode::SUCCESS)
    }

    async fn rebuild(&self, arg: &RebuildArg, stop: &CancellationToken) -> anyhow::Result<bool> {
        let pool = self.database.connect(false).await?;
        let plan = RebuildPlan::new(&arg.view.kinds(), arg.batch_size);
        let tables = plan.tables().join(", ");
        let rebuilder = Rebuilder::new(pool, plan);
        let start = rebuilder
            .start()
            .await
            .context("Failed to plan the rebuild")?;
        let done = start.resumed.as_ref().map_or(0, |c| c.done);
        if self.dry_run {
            println!(
                "dry run: would rebuild {tables} from {} events ({}), then swap them in",
                start.remaining,
                if done > 0 {
                    format!("resuming after {done} already folded")
                } else {
                    "from the start".to_owned()
                }
            );
            return Ok(false);
        }
        let bar = progress_bar("rebuild", done + start.remaining, done);
        let started = std::time::Instant::now();
        let outcome = rebuilder
            .run(&start, stop, |n| bar.set_position(n))
            .await
            .context("The rebuild failed (run it again to resume)")?;
        bar.finish_and_clear();
        match outcome {
            RebuildOutcome::Finished { events, caught_up } => {
                println!(
                    "rebuilt {tables} from {events} events ({caught_up} caught up at the swap) in {:.1}s",
                    started.elapsed().as_secs_f64()
                );
                Ok(false)
            }
            RebuildOutcome::Interrupted { events } => {
                eprintln!("rebuild stopped after {events} events");
                Ok(true)
            }
        }
    }

    /// Exits with [`EXIT_DIFFERENCES`] when any row differs.
    async fn verify(&self, arg: &VerifyArg) -> anyhow::Result<ExitCode> {
        let pool = self.database.connect(false).await?;
        let repair = arg.repair && !self.dry_run;
        let report = verify(&pool, arg.batch_size.max(1), repair)
            .await
            .context("The read models could not be compared with the event store")?;
        if arg.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            for difference in &report.differences {
                println!(
                    "{:<14} {:<38} {:<8} view #{:<6} store #{}",
                    difference.view,
                    difference.aggregate_id,
                    difference.kind.label(),
                    difference
                        .view_sequence
                        .map_or_else(|| "-".to_owned(), |s| s.to_string()),
                    difference
                        .store_sequence
                        .map_or_else(|| "-".to_owned(), |s| s.to_string()),
                );
            }
            println!(
                "compared {} rows: {} differ{}",
                report.compared,
                report.differences.len(),
                if repair {
                    format!(
                        "; repaired ({} events applied, {} rows could not be healed)",
                        report.healed_events, report.unhealable
                    )
                } else {
                    String::new()
                }
            );
        }
        Ok(if report.differences.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(EXIT_DIFFERENCES)
        })
    }

    async fn republish(
        &self,
        arg: &RepublishArg,
        stop: &CancellationToken,
    ) -> anyhow::Result<bool> {
        self.relay.check_kafka()?;
        let relay = self.relay.config();
        let filter = match (&arg.aggregate, arg.from_position) {
            (Some(aggregate), _) => {
                let (kind, id) = parse_aggregate(aggregate).context("--aggregate")?;
                HistoryFilter {
                    aggregate_types: vec![kind.type_name().to_owned()],
                    aggregate_id: Some(id),
                    from_position: 0,
                }
            }
            (None, from) => HistoryFilter {
                from_position: from.unwrap_or_default(),
                ..HistoryFilter::default()
            },
        };
        let topics = match (&arg.topic_suffix, &arg.to_topic) {
            (_, Some(topic)) => Topics {
                tickets: topic.clone(),
                orders: topic.clone(),
                payments: topic.clone(),
            },
            (Some(suffix), None) => Topics {
                tickets: topic_version(&relay.topics.tickets, suffix),
                orders: topic_version(&relay.topics.orders, suffix),
                payments: topic_version(&relay.topics.payments, suffix),
            },
            (None, None) => relay.topics.clone(),
        };
        let plan = RepublishPlan {
            filter,
            topics,
            batch_size: arg.batch_size.max(1),
        };
        let pool = self.database.connect(false).await?;
        let republisher = Republisher::new(pool, plan.clone(), &relay);
        let start = republisher
            .start()
            .await
            .context("Failed to plan the republish")?;
        let done = start.resumed.as_ref().map_or(0, |c| c.done);
        if self.dry_run {
            println!(
                "dry run: would republish {} events to {} ({})",
                start.remaining,
                plan.topics.all().join(", "),
                if done > 0 {
                    format!("resuming after {done} already sent")
                } else {
                    "from the start".to_owned()
                }
            );
            return Ok(false);
        }
        let bar = progress_bar("republish", done + start.remaining, done);
        let outcome = republisher
            .run(&start, stop, |n| bar.set_position(n))
            .await
            .context("The republish failed (run it again to resume)")?;
        bar.finish_and_clear();
        match outcome {
            RepublishOutcome::Finished { published } => {
                println!(
                    "republished {published} events to {}",
                    plan.topics.all().join(", ")
                );
                Ok(false)
            }
            RepublishOutcome::Interrupted { published } => {
                eprintln!("republish stopped after {published} events");
                Ok(true)
            }
        }
    }

    async fn dlq(&self, command: &DlqCommand, stop: &CancellationToken) -> anyhow::Result<bool> {
        self.relay.check_kafka()?;
        let relay = self.relay.config();
        let arg = match command {
            DlqCommand::List(arg) | DlqCommand::Redrive(arg) => arg,
        };
        let topics: Vec<String> = match &arg.topic {
            Some(topic) => vec![topic.clone()],
            None => relay
                .topics
                .all()
                .iter()
                .map(|t| ProjectionConfig::dead_letter_topic(t))
                .collect(),
        };
        let mut listed = Vec::new();
        for topic in topics {
            let queue = DeadLetterQueue::new(
                &relay.brokers,
                &relay.kafka_properties,
                &topic,
                &arg.group_id,
            );
            let letters = match queue.list().await {
                // A DLQ topic is created when a projector starts: none yet
                // means nothing was parked there. A named one must exist.
                Err(RedriveError::NoSuchTopic(_)) if arg.topic.is_none() => {
                    if !arg.json {
                        println!("{topic}: no such topic, 0 dead letter(s)");
                    }
                    continue;
                }
                letters => letters.with_context(|| format!("Failed to read {topic}"))?,
            };
            let redrive = matches!(command, DlqCommand::Redrive(_)) && !self.dry_run;
            if arg.json && matches!(command, DlqCommand::List(_)) {
                listed.extend(letters.into_iter().map(|letter| (topic.clone(), letter)));
                continue;
            }
            if !redrive {
                println!("{topic}: {} dead letter(s)", letters.len());
                for letter in &letters {
                    println!(
                        "  {}@{} key={} event={} id={} from={} error={}",
                        letter.partition,
                        letter.offset,
                        letter.key.as_deref().unwrap_or("-"),
                        letter.event_type.as_deref().unwrap_or("-"),
                        letter.event_id.as_deref().unwrap_or("-"),
                        letter.origin.as_deref().unwrap_or("-"),
                        letter.error.as_deref().unwrap_or("-"),
                    );
                }
                if matches!(command, DlqCommand::Redrive(_)) {
                    println!("dry run: would re-drive {} message(s)", letters.len());
                }
                continue;
            }
            let total = u64::try_from(letters.len()).unwrap_or_default();
            let bar = progress_bar("re-drive", total, 0);
            let outcome = queue
                .redrive(stop, |n| bar.set_position(n))
                .await
                .with_context(|| format!("Failed to re-drive {topic}"))?;
            bar.finish_and_clear();
            match outcome {
                RedriveOutcome::Finished { redriven } => {
                    println!("{topic}: re-drove {redriven} message(s)");
                }
                RedriveOutcome::Interrupted { redriven } => {
                    eprintln!("{topic}: re-drive stopped after {redriven} message(s)");
                    return Ok(true);
                }
            }
        }
        if arg.json && matches!(command, DlqCommand::List(_)) {
            let letters: Vec<serde_json::Value> = listed
                .iter()
                .map(|(topic, letter)| {
                    serde_json::json!({
                        "topic": topic,
                        "partition": letter.partition,
                        "offset": letter.offset,
                        "key": letter.key,
                        "eventType": letter.event_type,
                        "eventId": letter.event_id,
                        "origin": letter.origin,
                        "error": letter.error,
                    })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&letters)?);
        }
        Ok(false)
    }
}

/// `type:id`, the type as in the event store (`Order`) or lower case.
/// (Also `ticketing history`'s argument.)
pub(crate) fn parse_aggregate(value: &str) -> anyhow::Result<(AggregateKind, String)> {
    let (kind, id) = value
        .split_once(':')
        .filter(|(_, id)| !id.is_empty())
        .with_context(|| format!("{value}: expected TYPE:ID, e.g. order:<id>"))?;
    let kind = match kind.to_ascii_lowercase().as_str() {
        "ticket" => AggregateKind::Ticket,
        "order" => AggregateKind::Order,
        "payment" => AggregateKind::Payment,
        other => anyhow::bail!("unknown aggregate type {other} (ticket, order or payment)"),
    };
    Ok((kind, id.to_owned()))
}

/// A bar on stderr with rate and ETA (hidden when stderr is not a
/// terminal).
fn progress_bar(what: &str, total: u64, done: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} [{elapsed_precise}] [{wide_bar}] {human_pos}/{human_len} {per_sec} ETA {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_owned());
    bar.set_position(done);
    bar
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::parse_aggregate;
    use ticketing_projections::AggregateKind;

    #[test]
    fn an_aggregate_is_type_colon_id() {
        assert_eq!(
            parse_aggregate("Order:o-1").unwrap(),
            (AggregateKind::Order, "o-1".to_owned())
        );
        assert_eq!(
            parse_aggregate("ticket:a:b").unwrap(),
            (AggregateKind::Ticket, "a:b".to_owned())
        );
        assert!(parse_aggregate("order:").is_err());
        assert!(parse_aggregate("user:1").is_err());
        assert!(parse_aggregate("order").is_err());
    }
}
