//! `dsession token …`: the token operations on the store a config file
//! and flags name.

use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Args, Subcommand};
use dsession::{Authenticator, Error, PageRequest, SessionAttributes, SessionManager, TokenEntry};
use dsession_service::{CheckTokenResponse, RefreshedToken};
use serde::Serialize;
use serde_json::json;

use super::Output;
use crate::flags::ConfigArgs;

#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Issue a token for a user.
    Create {
        /// The user id.
        #[arg(long)]
        user: String,
        /// Lifetime in seconds; 0 means the default.
        #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
        ttl: i64,
        #[command(flatten)]
        attributes: AttributeArgs,
        #[command(flatten)]
        common: Common,
    },
    /// Check a token; exits 1 when it is not valid.
    Check {
        /// The token.
        #[arg(long)]
        token: String,
        /// Also load the user's detail (user-info cache, then loader).
        #[arg(long)]
        load_user: bool,
        /// How long loaded detail is cached, in seconds (0: the default);
        /// loads the user's detail even without --load-user.
        #[arg(long, allow_negative_numbers = true)]
        user_ttl: Option<i64>,
        #[command(flatten)]
        common: Common,
    },
    /// Extend a live token; exits 1 when it is not live.
    Refresh {
        /// The token.
        #[arg(long)]
        token: String,
        /// New lifetime in seconds from now; 0 means the default.
        #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
        ttl: i64,
        #[command(flatten)]
        common: Common,
    },
    /// Revoke a token.
    Revoke {
        /// The token.
        #[arg(long)]
        token: String,
        #[command(flatten)]
        common: Common,
    },
    /// List a user's live tokens, newest first, with where each login
    /// came from.
    List {
        /// The user id.
        #[arg(long)]
        user: String,
        /// The most tokens to list; 0 lists every one.
        #[arg(long, default_value_t = 0)]
        limit: u32,
        /// Start after this cursor, the `next cursor` a list printed.
        #[arg(long)]
        cursor: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Revoke every token of a user.
    RevokeAll {
        /// The user id.
        #[arg(long)]
        user: String,
        #[command(flatten)]
        common: Common,
    },
}

/// Where a login comes from (`set-token`'s attributes), each optional.
#[derive(Debug, Args)]
pub(crate) struct AttributeArgs {
    /// A device label ("laptop"), 1 to 64 characters.
    #[arg(long)]
    device: Option<String>,
    /// The client's user agent, at most 512 characters.
    #[arg(long)]
    user_agent: Option<String>,
    /// The client's IP address.
    #[arg(long)]
    ip: Option<String>,
    /// A label, NAME=VALUE; repeat for more (at most 16).
    #[arg(long = "label", value_name = "NAME=VALUE", value_parser = label)]
    labels: Vec<(String, String)>,
}

fn label(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .ok_or_else(|| "a label is NAME=VALUE".to_owned())
}

impl AttributeArgs {
    fn attributes(self) -> SessionAttributes {
        SessionAttributes {
            device: self.device,
            user_agent: self.user_agent,
            ip: self.ip,
            labels: self.labels.into_iter().collect(),
        }
    }
}

/// One listed token as a line: its name, expiry, and what is known of it.
fn listed(entry: &TokenEntry) -> String {
    let mut line = format!(
        "{}  {}, session {}",
        entry.token,
        expiry(entry.token_expire_time),
        entry.session_id
    );
    let known = [
        ("issued at", entry.created_at.map(|at| at.to_string())),
        ("last seen", entry.last_seen.map(|at| at.to_string())),
        ("device", entry.attributes.device.clone()),
        ("ip", entry.attributes.ip.clone()),
        ("user agent", entry.attributes.user_agent.clone()),
    ];
    for (what, value) in known {
        if let Some(value) = value {
            line.push_str(&format!(", {what} {value}"));
        }
    }
    for (name, value) in &entry.attributes.labels {
        line.push_str(&format!(", {name}={value}"));
    }
    line
}

/// A token command's session manager and output format.
#[derive(Debug, Args)]
pub(crate) struct Common {
    #[command(flatten)]
    config: ConfigArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

impl TokenCommand {
    /// Whether the output is JSON.
    pub(crate) fn wants_json(&self) -> bool {
        match self {
            Self::Create { common, .. }
            | Self::Check { common, .. }
            | Self::Refresh { common, .. }
            | Self::Revoke { common, .. }
            | Self::List { common, .. }
            | Self::RevokeAll { common, .. } => common.json,
        }
    }
}

impl Common {
    /// Whether the output is JSON.
    pub(crate) fn wants_json(&self) -> bool {
        self.json
    }

    /// The authenticator `serve` would build from the same config: its
    /// manager checked as the service's is at start, its checks those of
    /// `/v1/tokens/check`.
    async fn authenticator(&self) -> anyhow::Result<Authenticator> {
        let config = self.config.config()?;
        Ok(config.authenticator(config.open(None).await?))
    }

    pub(crate) async fn manager(&self) -> anyhow::Result<SessionManager> {
        Ok(self.authenticator().await?.sessions().clone())
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}

fn expiry(expire_time: i64) -> String {
    if expire_time < 0 {
        "never expires".into()
    } else {
        format!("expires at {expire_time} (in {} s)", expire_time - now())
    }
}

/// `value` as the HTTP API shows the same thing.
fn shape(value: impl Serialize) -> serde_json::Value {
    serde_json::to_value(value).expect("API types serialize")
}

pub(crate) async fn run(command: TokenCommand) -> anyhow::Result<Result<Output, Error>> {
    Ok(match command {
        TokenCommand::Create {
            user,
            ttl,
            attributes,
            common,
        } => {
            let manager = common.manager().await?;
            let issued = manager
                .set_token_with(&user, ttl, &attributes.attributes())
                .await;
            issued.map(|issued| {
                let text = format!("{}\n{}", issued.token, expiry(issued.token_expire_time));
                Output::yes(text, shape(issued))
            })
        }
        TokenCommand::Check {
            token,
            load_user,
            user_ttl,
            common,
        } => {
            let user_ttl = user_ttl.or(load_user.then_some(0));
            let authenticator = common.authenticator().await?;
            authenticator.check(&token, user_ttl).await.map(|user| {
                let text = match &user {
                    Some(user) => {
                        let detail = user
                            .detail
                            .as_ref()
                            .map(|detail| format!("\ndetail: {detail}"))
                            .unwrap_or_default();
                        format!(
                            "valid: user {}, {}{detail}",
                            user.id,
                            expiry(user.token_expire_time)
                        )
                    }
                    None => "not valid".to_owned(),
                };
                let valid = user.is_some();
                let json = shape(CheckTokenResponse { valid, user });
                if valid {
                    Output::yes(text, json)
                } else {
                    Output::no(text, json)
                }
            })
        }
        TokenCommand::Refresh { token, ttl, common } => {
            match common.manager().await?.refresh_token(&token, ttl).await {
                Ok(token_expire_time) => Ok(Output::yes(
                    format!("refreshed, {}", expiry(token_expire_time)),
                    shape(RefreshedToken { token_expire_time }),
                )),
                Err(error @ Error::NotFound) => Ok(Output::no(
                    "not live: nothing refreshed",
                    super::error_json(error.code(), &error.to_string()),
                )),
                Err(error) => Err(error),
            }
        }
        TokenCommand::Revoke { token, common } => common
            .manager()
            .await?
            .delete_token(&token)
            .await
            .map(|()| Output::yes("revoked", json!({ "revoked": true }))),
        TokenCommand::List {
            user,
            limit,
            cursor,
            common,
        } => {
            let first = cursor.is_none();
            common
                .manager()
                .await?
                .list_user_token_page(&user, &PageRequest { cursor, limit })
                .await
                .map(|page| {
                    let mut lines: Vec<String> = page.tokens.iter().map(listed).collect();
                    if lines.is_empty() {
                        lines.push(match first {
                            true => format!("user {user} has no live tokens"),
                            false => format!("user {user} has no live tokens after that cursor"),
                        });
                    }
                    if let Some(cursor) = &page.next_cursor {
                        lines.push(format!("next cursor: {cursor}"));
                    }
                    Output::yes(lines.join("\n"), shape(page))
                })
        }
        TokenCommand::RevokeAll { user, common } => common
            .manager()
            .await?
            .delete_user_token(&user)
            .await
            .map(|()| {
                Output::yes(
                    format!("revoked every token of user {user}"),
                    json!({ "revoked": true }),
                )
            }),
    })
}
