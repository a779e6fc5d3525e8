//! `dsession events tail`: the session events of the store a config file
//! and flags name, oldest first, and with `--follow` each new one as it
//! is recorded.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use dsession::store::EventId;
use dsession::{EventTail, SessionEvent};

use super::{fail, token::Common};

/// How often `--follow` asks the store for new events.
const FOLLOW_EVERY: Duration = Duration::from_millis(200);

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
    let after = match args.after.as_deref().map(EventId::parse).transpose() {
        Ok(after) => after,
        Err(error) => return fail("invalid_argument", &error.to_string(), as_json),
    };
    let manager = match args.common.manager().await {
        Ok(manager) => manager,
        Err(error) => return fail("setup", &format!("{error:#}"), as_json),
    };
    let (mut tail, mut events) = match after {
        Some(after) => (EventTail::after(&manager, after), Vec::new()),
        None => match EventTail::latest(&manager, args.last).await {
            Ok(latest) => latest,
            Err(error) => return fail(error.code(), &error.to_string(), as_json),
        },
    };
    // Those after an id: every one of them, a batch at a time.
    if after.is_some() {
        loop {
            match tail.next().await {
                Ok(batch) if batch.is_empty() => break,
                Ok(batch) => events.extend(batch),
                Err(error) => return fail(error.code(), &error.to_string(), as_json),
            }
        }
    }
    for event in &events {
        print(event, as_json);
    }
    if !args.follow {
        return ExitCode::SUCCESS;
    }
    let mut failing = false;
    loop {
        tokio::time::sleep(FOLLOW_EVERY).await;
        match tail.next().await {
            Ok(events) => {
                failing = false;
                events.iter().for_each(|event| print(event, as_json));
            }
            Err(error) if !failing => {
                failing = true;
                eprintln!("warning: cannot read events, retrying: {error}");
            }
            Err(_) => {}
        }
    }
}
