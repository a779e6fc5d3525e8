//! `dsession events tail`: the session events of the store a config file
//! and flags name, oldest first, and with `--follow` each new one as it
//! is recorded.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use dsession::SessionEvent;
use dsession::store::{EventId, EventRange};

use super::{error_json, token::Common};

/// How often `--follow` asks the store for new events.
const FOLLOW_EVERY: Duration = Duration::from_millis(200);

/// The most events one read of `--follow` takes.
const FOLLOW_BATCH: usize = 1000;

#[derive(Debug, Subcommand)]
pub(crate) enum EventsCommand {
    /// Print session events, oldest first: the latest, or those after an
    /// id; with --follow, then each new one as it is recorded, until
    /// interrupted.
    Tail(TailArgs),
}

#[derive(Debug, Args)]
pub(crate) struct TailArgs {
    /// How many of the latest events to print first.
    #[arg(long, default_value_t = 20)]
    last: usize,
    /// Print the events after this id (`{ms}-{seq}`, as printed) instead
    /// of the latest.
    #[arg(long, conflicts_with = "last")]
    after: Option<String>,
    /// Keep printing new events as they are recorded.
    #[arg(long)]
    follow: bool,
    #[command(flatten)]
    common: Common,
}

impl EventsCommand {
    /// Whether the output is JSON.
    pub(crate) fn wants_json(&self) -> bool {
        match self {
            Self::Tail(args) => args.common.wants_json(),
        }
    }
}

/// One event as a line: its id, what happened, to whom, and what else is
/// known of it.
fn line(event: &SessionEvent) -> String {
    let mut line = format!("{}  {}  user {:?}", event.id, event.event, event.user);
    let known = [
        ("session", &event.session),
        ("device", &event.device),
        ("detail", &event.detail),
    ];
    for (what, value) in known {
        if let Some(value) = value {
            line.push_str(&format!(", {what} {value:?}"));
        }
    }
    for (name, value) in &event.other {
        line.push_str(&format!(", {name}={value:?}"));
    }
    line
}

fn print(event: &SessionEvent, as_json: bool) {
    if as_json {
        println!(
            "{}",
            serde_json::to_string(event).expect("events serialize")
        );
    } else {
        println!("{}", line(event));
    }
}

/// Runs `events tail`: exit 0 once printed (with --follow, never but for
/// a failure to start), 2 for an error.
pub(crate) async fn run(command: EventsCommand) -> ExitCode {
    let EventsCommand::Tail(args) = command;
    let as_json = args.common.wants_json();
    let fail = |code: &str, message: String| {
        if as_json {
            println!("{}", error_json(code, &message));
        } else {
            eprintln!("error: {message}");
        }
        ExitCode::from(2)
    };
    let first = match &args.after {
        Some(after) => match EventId::parse(after) {
            Ok(after) => EventRange::After(after, usize::MAX),
            Err(error) => return fail("invalid_argument", error.to_string()),
        },
        None => EventRange::Last(args.last),
    };
    let manager = match args.common.manager().await {
        Ok(manager) => manager,
        Err(error) => return fail("setup", format!("{error:#}")),
    };
    let mut last = match first {
        EventRange::After(after, _) => after,
        EventRange::Last(_) => EventId::ZERO,
    };
    let events = match manager.read_events(first).await {
        Ok(events) => events,
        Err(error) => return fail(error.code(), error.to_string()),
    };
    let seen = |events: Vec<SessionEvent>, last: &mut EventId| {
        for event in events {
            if let Ok(id) = EventId::parse(&event.id) {
                *last = (*last).max(id);
            }
            print(&event, as_json);
        }
    };
    seen(events, &mut last);
    if !args.follow {
        return ExitCode::SUCCESS;
    }
    if last == EventId::ZERO {
        // Nothing yet: follow from now, not from whatever a slow store
        // lists first.
        if let Ok(latest) = manager.read_events(EventRange::Last(1)).await
            && let Some(event) = latest.first()
        {
            last = EventId::parse(&event.id).unwrap_or(EventId::ZERO);
        }
    }
    let mut failing = false;
    loop {
        tokio::time::sleep(FOLLOW_EVERY).await;
        match manager
            .read_events(EventRange::After(last, FOLLOW_BATCH))
            .await
        {
            Ok(events) => {
                failing = false;
                seen(events, &mut last);
            }
            Err(error) if !failing => {
                failing = true;
                eprintln!("warning: cannot read events, retrying: {error}");
            }
            Err(_) => {}
        }
    }
}
