//! What one scenario measured: throughput, latency percentiles and
//! responses by status, merged from goose's per-request histograms.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use goose::metrics::{GooseMetrics, GooseRequestMetricAggregate};
use goose::test_plan::TestPlanStepAction;
use hdrhistogram::Histogram;

/// Status goose records when no response came (connection error, timeout).
pub(crate) const NO_RESPONSE: u16 = 0;

#[derive(Clone, Debug)]
pub(crate) struct Measurement {
    pub(crate) requests: u64,
    /// The measured window: from the moment every user had started to the
    /// moment they were told to stop.
    pub(crate) window: Duration,
    pub(crate) p50_us: u64,
    pub(crate) p95_us: u64,
    pub(crate) p99_us: u64,
    pub(crate) max_us: u64,
    /// Every response by status (2xx included); `NO_RESPONSE` for requests
    /// that got none.
    pub(crate) statuses: BTreeMap<u16, u64>,
}

impl Measurement {
    /// Merges the requests of `metrics` whose name `include` accepts (goose
    /// keys each request by `"<METHOD> <name>"`).
    pub(crate) fn from_goose(
        metrics: &GooseMetrics,
        include: impl Fn(&str) -> bool,
    ) -> anyhow::Result<Self> {
        let parts: Vec<&GooseRequestMetricAggregate> = metrics
            .requests
            .iter()
            .filter(|(key, _)| include(key.split_once(' ').map_or(key.as_str(), |(_, name)| name)))
            .map(|(_, aggregate)| aggregate)
            .collect();
        Self::merge(&parts, measured_window(metrics))
    }

    pub(crate) fn merge(
        parts: &[&GooseRequestMetricAggregate],
        window: Duration,
    ) -> anyhow::Result<Self> {
        // goose keeps each request's times in log-linear buckets (never
        // wider than 1/64 of their value); an HDR histogram of the buckets'
        // lower bounds merges them at the same precision.
        let mut histogram = Histogram::<u64>::new(3).context("histogram bounds")?;
        let mut max_us = 0;
        let mut statuses = BTreeMap::new();
        for part in parts {
            for (&bucket_us, &count) in part.raw_data.times_us.iter() {
                histogram
                    .record_n(bucket_us.max(1), u64::try_from(count)?)
                    .context("recording a latency bucket")?;
            }
            max_us = max_us.max(part.raw_data.maximum_time_us);
            for (&status, &count) in &part.status_code_counts {
                *statuses.entry(status).or_insert(0) += u64::try_from(count)?;
            }
        }
        Ok(Self::from_histogram(&histogram, max_us, statuses, window))
    }

    /// Requests the harness made itself, outside goose: each one's status
    /// (`NO_RESPONSE` if none came) and time, measured over `window`.
    pub(crate) fn from_requests(
        requests: impl IntoIterator<Item = (u16, Duration)>,
        window: Duration,
    ) -> anyhow::Result<Self> {
        let mut histogram = Histogram::<u64>::new(3).context("histogram bounds")?;
        let mut max_us = 0;
        let mut statuses = BTreeMap::new();
        for (status, time) in requests {
            let us = u64::try_from(time.as_micros()).unwrap_or(u64::MAX).max(1);
            histogram.record(us).context("recording a latency")?;
            max_us = max_us.max(us);
            *statuses.entry(status).or_insert(0) += 1;
        }
        Ok(Self::from_histogram(&histogram, max_us, statuses, window))
    }

    /// From a histogram of every request's time in microseconds (its
    /// `max_us` exact, the percentiles capped at it) and their statuses.
    fn from_histogram(
        histogram: &Histogram<u64>,
        max_us: u64,
        statuses: BTreeMap<u16, u64>,
        window: Duration,
    ) -> Self {
        let percentile = |quantile: f64| histogram.value_at_quantile(quantile).min(max_us);
        Self {
            requests: histogram.len(),
            window,
            p50_us: percentile(0.50),
            p95_us: percentile(0.95),
            p99_us: percentile(0.99),
            max_us,
            statuses,
        }
    }

    pub(crate) fn requests_per_second(&self) -> f64 {
        let seconds = self.window.as_secs_f64();
        if seconds > 0.0 {
            self.requests as f64 / seconds
        } else {
            0.0
        }
    }

    /// Responses that were not 2xx, and requests without a response.
    pub(crate) fn errors(&self) -> u64 {
        self.statuses
            .iter()
            .filter(|(status, _)| !(200..300).contains(*status))
            .map(|(_, count)| count)
            .sum()
    }

    pub(crate) fn error_percent(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            100.0 * self.errors() as f64 / self.requests as f64
        }
    }

    pub(crate) fn count_of(&self, status: u16) -> u64 {
        self.statuses.get(&status).copied().unwrap_or(0)
    }

    /// `none`, or e.g. `404 x12, no response x3`.
    pub(crate) fn errors_by_status(&self) -> String {
        let parts: Vec<String> = self
            .statuses
            .iter()
            .filter(|(status, _)| !(200..300).contains(*status))
            .map(|(&status, count)| match status {
                NO_RESPONSE => format!("no response x{count}"),
                status => format!("{status} x{count}"),
            })
            .collect();
        if parts.is_empty() {
            "none".to_owned()
        } else {
            parts.join(", ")
        }
    }
}

/// The time from the start of the `Maintaining` step (every user started:
/// goose resets its metrics then) to the next step; goose's own whole
/// seconds when the history lacks it.
fn measured_window(metrics: &GooseMetrics) -> Duration {
    let history = &metrics.history;
    let window = history
        .iter()
        .position(|step| matches!(step.action, TestPlanStepAction::Maintaining))
        .and_then(|index| {
            let next = history.get(index + 1)?;
            (next.timestamp - history[index].timestamp).to_std().ok()
        });
    window.unwrap_or_else(|| Duration::from_secs(metrics.duration as u64))
}

/// Microseconds as milliseconds or seconds, for the table.
pub(crate) fn format_latency(us: u64) -> String {
    if us >= 10_000_000 {
        format!("{:.1} s", us as f64 / 1e6)
    } else if us >= 1_000_000 {
        format!("{:.2} s", us as f64 / 1e6)
    } else if us >= 10_000 {
        format!("{:.0} ms", us as f64 / 1e3)
    } else {
        format!("{:.1} ms", us as f64 / 1e3)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn measurement(statuses: &[(u16, u64)]) -> Measurement {
        Measurement {
            requests: statuses.iter().map(|(_, c)| c).sum(),
            window: Duration::from_secs(10),
            p50_us: 0,
            p95_us: 0,
            p99_us: 0,
            max_us: 0,
            statuses: statuses.iter().copied().collect(),
        }
    }

    #[test]
    fn errors_are_the_non_2xx_responses_and_the_missing_ones() {
        let m = measurement(&[(200, 90), (201, 5), (404, 3), (NO_RESPONSE, 2)]);
        assert_eq!(m.errors(), 5);
        assert_eq!(m.errors_by_status(), "no response x2, 404 x3");
        assert!((m.error_percent() - 5.0).abs() < 1e-9);
        assert!((m.requests_per_second() - 10.0).abs() < 1e-9);
        assert_eq!(measurement(&[(200, 1)]).errors_by_status(), "none");
    }

    fn aggregate(
        times_us: &[(u64, usize)],
        statuses: &[(u16, usize)],
    ) -> GooseRequestMetricAggregate {
        let mut buckets = goose::metrics::TimeBuckets::new();
        for &(us, count) in times_us {
            buckets.insert(us, count);
        }
        GooseRequestMetricAggregate {
            path: "/p".to_owned(),
            method: goose::goose::GooseMethod::Get,
            raw_data: goose::metrics::GooseRequestMetricTimingData {
                times_us: buckets,
                minimum_time_us: times_us.iter().map(|t| t.0).min().unwrap(),
                maximum_time_us: times_us.iter().map(|t| t.0).max().unwrap(),
                total_time_us: times_us.iter().map(|t| t.0 * t.1 as u64).sum(),
                counter: times_us.iter().map(|t| t.1).sum(),
            },
            coordinated_omission_data: None,
            status_code_counts: statuses.iter().copied().collect(),
            status_code_timings: std::collections::HashMap::new(),
            success_count: 0,
            fail_count: 0,
            load_test_hash: 0,
            custom_method: String::new(),
        }
    }

    #[test]
    fn merging_requests_combines_their_histograms_and_statuses() {
        // 98 fast requests on one path, 2 slow ones on another.
        let fast = aggregate(&[(1_000, 98)], &[(200, 97), (500, 1)]);
        let slow = aggregate(&[(2_000_000, 2)], &[(201, 2)]);
        let m = Measurement::merge(&[&fast, &slow], Duration::from_secs(4)).unwrap();
        assert_eq!(m.requests, 100);
        assert_eq!(m.max_us, 2_000_000);
        assert!((999..=1_001).contains(&m.p50_us), "p50 {}", m.p50_us);
        assert!((999..=1_001).contains(&m.p95_us), "p95 {}", m.p95_us);
        // The 99th percentile falls among the slow ones (HDR precision).
        assert!(m.p99_us >= 1_990_000, "p99 {}", m.p99_us);
        assert_eq!(m.errors(), 1);
        assert_eq!(m.count_of(201), 2);
        assert!((m.requests_per_second() - 25.0).abs() < 1e-9);
    }

    #[test]
    fn requests_are_selected_by_their_name_without_the_method() {
        let mut metrics = GooseMetrics::default();
        let _ = metrics.requests.insert(
            "POST journey: a".to_owned(),
            aggregate(&[(1_000, 3)], &[(201, 3)]),
        );
        let _ = metrics.requests.insert(
            "POST setup".to_owned(),
            aggregate(&[(1_000, 2)], &[(201, 2)]),
        );
        let m = Measurement::from_goose(&metrics, |name| name == "journey: a").unwrap();
        assert_eq!(m.requests, 3);
        let all = Measurement::from_goose(&metrics, |_| true).unwrap();
        assert_eq!(all.requests, 5);
    }

    #[test]
    fn requests_made_by_the_harness_are_measured_like_goose_ones() {
        let ms = Duration::from_millis;
        let requests = (0..98)
            .map(|_| (201, ms(2)))
            .chain([(503, ms(5_000)), (NO_RESPONSE, ms(30_000))]);
        let m = Measurement::from_requests(requests, Duration::from_secs(10)).unwrap();
        assert_eq!(m.requests, 100);
        assert_eq!(m.max_us, 30_000_000);
        assert!((1_999..=2_001).contains(&m.p50_us), "p50 {}", m.p50_us);
        assert_eq!(m.count_of(503), 1);
        assert_eq!(m.errors_by_status(), "no response x1, 503 x1");
        assert!((m.requests_per_second() - 10.0).abs() < 1e-9);
        let none = Measurement::from_requests([], Duration::from_secs(1)).unwrap();
        assert_eq!((none.requests, none.max_us, none.p99_us), (0, 0, 0));
    }

    #[test]
    fn latencies_print_in_a_readable_unit() {
        assert_eq!(format_latency(1_500), "1.5 ms");
        assert_eq!(format_latency(45_000), "45 ms");
        assert_eq!(format_latency(1_400_000), "1.40 s");
        assert_eq!(format_latency(50_900_000), "50.9 s");
    }
}
