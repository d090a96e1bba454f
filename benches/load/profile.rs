//! The original platform's load scenarios: who runs them, for how long, and
//! the figures the original published for each.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// How long the scenarios run: `short` for `make bench` (the original
/// concurrency, seconds instead of minutes), `full` for `make bench-full`
/// (the original durations).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Profile {
    Short,
    Full,
}

impl FromStr for Profile {
    type Err = anyhow::Error;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "short" => Ok(Self::Short),
            "full" => Ok(Self::Full),
            other => anyhow::bail!("LOAD_PROFILE must be `short` or `full`, not `{other}`"),
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Short => "short",
            Self::Full => "full",
        })
    }
}

/// One of the original's load scenarios.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scenario {
    SignIn,
    CreateTicket,
    ListTickets,
    ListOrders,
    Spike,
    /// GET one ticket by id, over the ids of the first page of the list.
    GetTicket,
    Soak,
    Journey,
    /// Create-ticket load with the read side watched: backlog, freshness,
    /// read-your-writes and drain (`crate::pipeline`).
    Pipeline,
}

/// What the original platform published for a scenario (absent = not
/// published).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Published {
    pub(crate) requests_per_second: f64,
    pub(crate) p50_ms: Option<f64>,
    pub(crate) p95_ms: Option<f64>,
    pub(crate) p99_ms: Option<f64>,
    /// Failed requests and requests in all.
    pub(crate) errors: Option<(u64, u64)>,
    pub(crate) failed_percent: Option<f64>,
}

impl Scenario {
    /// In the order they run: the list scenarios read what create-ticket
    /// wrote; the pipeline runs last, so that the read-only scenarios are
    /// not measured beside a read side still draining its backlog.
    pub(crate) const ALL: [Scenario; 9] = [
        Self::SignIn,
        Self::CreateTicket,
        Self::ListTickets,
        Self::ListOrders,
        Self::Spike,
        Self::GetTicket,
        Self::Soak,
        Self::Journey,
        Self::Pipeline,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::SignIn => "sign-in",
            Self::CreateTicket => "create-ticket",
            Self::ListTickets => "list-tickets",
            Self::ListOrders => "list-orders",
            Self::Spike => "spike",
            Self::GetTicket => "get-ticket",
            Self::Soak => "soak",
            Self::Journey => "journey",
            Self::Pipeline => "pipeline",
        }
    }

    pub(crate) fn from_name(name: &str) -> anyhow::Result<Self> {
        Self::ALL
            .into_iter()
            .find(|scenario| scenario.name() == name)
            .ok_or_else(|| {
                let known: Vec<_> = Self::ALL.iter().map(|s| s.name()).collect();
                anyhow::anyhow!("unknown scenario `{name}` (known: {})", known.join(", "))
            })
    }

    /// What the scenario does, for the table.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Self::SignIn => "POST /api/users/signin",
            Self::CreateTicket => "POST /api/tickets (signed in)",
            Self::ListTickets => "GET /api/tickets",
            Self::ListOrders => "GET /api/orders (signed in)",
            Self::Spike => "GET /api/tickets, all users at once",
            Self::GetTicket => "GET /api/tickets/{id}",
            Self::Soak => "GET /api/orders (signed in)",
            Self::Journey => "ticket -> order -> pay -> list orders",
            Self::Pipeline => "POST /api/tickets (signed in), read side watched",
        }
    }

    /// Concurrent users (connections): the original's, in both profiles.
    pub(crate) fn users(self) -> usize {
        match self {
            Self::SignIn => 500,
            Self::CreateTicket | Self::Pipeline => 700,
            Self::ListTickets | Self::GetTicket => 700,
            Self::ListOrders => 500,
            Self::Spike => 1_000,
            Self::Soak => 300,
            Self::Journey => 100,
        }
    }

    /// How long the users run once all have started. The original gave
    /// durations for sign-in (2 min), create-ticket (1 min) and the soak
    /// (10 min); the others run a minute in the full profile. The
    /// pipeline's load (create-ticket's users) runs 20 s in the short
    /// profile, long enough for a backlog to build; `LOAD_PIPELINE_SECONDS`
    /// overrides it (`crate::pipeline::Settings`).
    pub(crate) fn duration(self, profile: Profile) -> Duration {
        let seconds = match (profile, self) {
            (Profile::Full, Self::SignIn) => 120,
            (Profile::Full, Self::Soak) => 600,
            (Profile::Full, _) => 60,
            (Profile::Short, Self::SignIn | Self::CreateTicket | Self::Journey) => 15,
            (Profile::Short, Self::Soak | Self::Pipeline) => 20,
            (Profile::Short, _) => 10,
        };
        Duration::from_secs(seconds)
    }

    /// Users started per second: every scenario starts all its users
    /// within about a second, as the original's fixed-concurrency runs did.
    pub(crate) fn increase_rate(self) -> usize {
        self.users()
    }

    pub(crate) fn published(self) -> Option<Published> {
        match self {
            Self::CreateTicket => Some(Published {
                requests_per_second: 55.5,
                p50_ms: Some(1_400.0),
                p99_ms: Some(50_900.0),
                errors: Some((51, 2_650)),
                ..Published::default()
            }),
            Self::SignIn => Some(Published {
                requests_per_second: 17.5,
                ..Published::default()
            }),
            Self::Spike => Some(Published {
                requests_per_second: 120.0,
                p95_ms: Some(18_400.0),
                ..Published::default()
            }),
            Self::Journey => Some(Published {
                requests_per_second: 47.7,
                p95_ms: Some(5_730.0),
                failed_percent: Some(46.8),
                ..Published::default()
            }),
            Self::ListTickets
            | Self::ListOrders
            | Self::GetTicket
            | Self::Soak
            | Self::Pipeline => None,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_scenario_is_found_by_its_name() {
        for scenario in Scenario::ALL {
            assert_eq!(Scenario::from_name(scenario.name()).unwrap(), scenario);
        }
        assert!(Scenario::from_name("nope").is_err());
    }

    #[test]
    fn the_full_profile_keeps_the_original_durations() {
        assert_eq!(
            Scenario::SignIn.duration(Profile::Full),
            Duration::from_secs(120)
        );
        assert_eq!(
            Scenario::CreateTicket.duration(Profile::Full),
            Duration::from_secs(60)
        );
        assert_eq!(
            Scenario::Soak.duration(Profile::Full),
            Duration::from_secs(600)
        );
        for scenario in Scenario::ALL {
            assert!(scenario.duration(Profile::Short) < scenario.duration(Profile::Full));
        }
    }

    #[test]
    fn profiles_parse_and_print() {
        assert_eq!("short".parse::<Profile>().unwrap(), Profile::Short);
        assert_eq!("full".parse::<Profile>().unwrap().to_string(), "full");
        assert!("long".parse::<Profile>().is_err());
    }
}
