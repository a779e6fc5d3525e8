//! Session events: what a policy appends to the host's event stream, in
//! the same atomic step as the change each records, when
//! `settings.events` is true.
//!
//! ```
//! use dsession_policy_sdk::event::{Event, Kind};
//!
//! let login = Event::new(Kind::Login, "alice")
//!     .session("alice_0123")
//!     .device(Some("laptop"))
//!     .command("gosession-token_alice");
//! # let _ = login;
//! ```

use sha2::{Digest, Sha256};

use crate::Command;
use crate::bindings::dsession::session::store::EventArgs;

/// What happened to a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A login issued a token (set-token).
    Login,
    /// A token was extended (refresh-token).
    Refresh,
    /// A token was revoked (delete-token).
    Revoke,
    /// Every token of a user was revoked (delete-user-token).
    RevokeAll,
    /// A login revoked another token: single mode, or a session bound.
    Evict,
    /// A login was refused at a limit; nothing else changed.
    Reject,
}

impl Kind {
    /// The name the host reads in the `event` field.
    pub fn name(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::Refresh => "refresh",
            Self::Revoke => "revoke",
            Self::RevokeAll => "revoke-all",
            Self::Evict => "evict",
            Self::Reject => "reject",
        }
    }
}

/// One event, built field by field, then turned into its command.
#[derive(Debug, Clone)]
pub struct Event {
    fields: Vec<(String, String)>,
}

impl Event {
    /// An event of `kind` for user `user_id`.
    pub fn new(kind: Kind, user_id: &str) -> Self {
        Self {
            fields: vec![
                ("event".into(), kind.name().into()),
                ("user".into(), user_id.into()),
            ],
        }
    }

    /// The session it concerns, by the name `list-user-token` gives it:
    /// the event holds only that name's [`session_id`], never a token.
    pub fn session(mut self, name: &str) -> Self {
        self.fields.push(("session".into(), session_id(name)));
        self
    }

    /// The login's device label, when it gave one.
    pub fn device(mut self, device: Option<&str>) -> Self {
        if let Some(device) = device {
            self.fields.push(("device".into(), device.into()));
        }
        self
    }

    /// Free text: why a login was refused, which bound evicted a session.
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.fields.push(("detail".into(), detail.into()));
        self
    }

    /// The `append-event` command, for the atomic step that writes `beside`
    /// (on a Redis Cluster the event goes to the stream of its slot).
    pub fn command(self, beside: impl Into<String>) -> Command {
        Command::AppendEvent(EventArgs {
            beside: beside.into(),
            fields: self.fields,
        })
    }
}

/// A session's id in events and listings: the first 16 lowercase hex
/// digits of the SHA-256 of `name`, the name `list-user-token` gives the
/// session. It names the session without revealing its token.
pub fn session_id(name: &str) -> String {
    crate::random::to_hex(&Sha256::digest(name.as_bytes())[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_names_its_kind_user_session_id_device_and_detail() {
        let Command::AppendEvent(args) = Event::new(Kind::RevokeAll, "bob")
            .session("abc")
            .device(None)
            .device(Some("tv"))
            .detail("why")
            .command("index:bob")
        else {
            panic!("not an event");
        };
        assert_eq!(args.beside, "index:bob");
        let fields: Vec<(&str, &str)> = args
            .fields
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        assert_eq!(
            fields,
            [
                ("event", "revoke-all"),
                ("user", "bob"),
                ("session", "ba7816bf8f01cfea"),
                ("device", "tv"),
                ("detail", "why"),
            ]
        );
    }
}
