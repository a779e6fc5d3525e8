//! Every mapping between the WIT's generated types and the library's own:
//! the settings a call is given, the answers of the token API, the errors
//! either way, and what the user loader found.

use crate::error::Error;
use crate::loader::LoaderError;
use crate::store::StoreError;
use crate::types::{
    IssuedToken, PageRequest, SelfCheck, SessionAttributes, Settings, TokenEntry, TokenPage, User,
    UserInfo,
};
use crate::wit::{
    WitAttributes, WitConfigKey, WitError, WitIssuedToken, WitPageRequest, WitSelfCheck,
    WitSettings, WitTokenEntry, WitTokenPage, WitUser, WitUserInfo,
};

use super::describe::ConfigKey;

/// The settings every call of a manager's policy is given.
pub(crate) fn settings(settings: Settings, user_loader: bool, events: bool) -> WitSettings {
    WitSettings {
        token_key_prefix: settings.token_key_prefix,
        user_key_prefix: settings.user_key_prefix,
        default_expire_seconds: settings.default_expire_seconds,
        index_expire_seconds: settings.index_expire_seconds,
        single_mode: settings.single_mode,
        user_loader,
        events,
    }
}

/// The settings as an embedder gives them.
impl From<&WitSettings> for Settings {
    fn from(settings: &WitSettings) -> Self {
        Self {
            token_key_prefix: settings.token_key_prefix.clone(),
            user_key_prefix: settings.user_key_prefix.clone(),
            default_expire_seconds: settings.default_expire_seconds,
            index_expire_seconds: settings.index_expire_seconds,
            single_mode: settings.single_mode,
        }
    }
}

impl From<WitError> for Error {
    fn from(error: WitError) -> Self {
        match error {
            WitError::InvalidArgument(message) => Self::InvalidArgument(message),
            WitError::NotFound => Self::NotFound,
            WitError::Store(message) => Self::Store(message),
            WitError::Loader(message) => Self::Loader(message),
            WitError::Conflict(message) => Self::Conflict(message),
            WitError::Corrupt(message) => Self::Corrupt(message),
        }
    }
}

/// A store failure as the policy sees it: corrupt data, or an outage (a
/// refusal for memory among them; the host tells that one apart again when
/// the policy returns it, see `host::Instance::error`).
impl From<StoreError> for WitError {
    fn from(error: StoreError) -> Self {
        if error.is_corrupt() {
            Self::Corrupt(error.to_string())
        } else {
            Self::Store(error.to_string())
        }
    }
}

/// What the loader found, as `user-loader.load` answers it: the detail as
/// JSON text, or why loading failed.
pub(crate) fn loaded(
    found: Result<Option<serde_json::Value>, LoaderError>,
) -> Result<Option<String>, String> {
    match found {
        Ok(detail) => Ok(detail.map(|detail| detail.to_string())),
        Err(error) => Err(error.to_string()),
    }
}

fn detail(json: Option<String>) -> Result<Option<serde_json::Value>, Error> {
    json.map(|json| {
        serde_json::from_str(&json)
            .map_err(|e| Error::Policy(format!("the policy returned detail that is not JSON: {e}")))
    })
    .transpose()
}

impl From<WitIssuedToken> for IssuedToken {
    fn from(token: WitIssuedToken) -> Self {
        Self {
            token: token.token,
            token_expire_time: token.token_expire_time,
        }
    }
}

impl From<WitSelfCheck> for SelfCheck {
    fn from(report: WitSelfCheck) -> Self {
        Self {
            probe_token: report.probe_token,
            single_mode: report.single_mode,
            max_sessions: report.max_sessions,
        }
    }
}

impl From<&SessionAttributes> for WitAttributes {
    fn from(attributes: &SessionAttributes) -> Self {
        Self {
            device: attributes.device.clone(),
            user_agent: attributes.user_agent.clone(),
            ip: attributes.ip.clone(),
            labels: attributes
                .labels
                .iter()
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect(),
        }
    }
}

impl From<WitAttributes> for SessionAttributes {
    fn from(attributes: WitAttributes) -> Self {
        Self {
            device: attributes.device,
            user_agent: attributes.user_agent,
            ip: attributes.ip,
            labels: attributes.labels.into_iter().collect(),
        }
    }
}

impl From<&PageRequest> for WitPageRequest {
    fn from(page: &PageRequest) -> Self {
        Self {
            cursor: page.cursor.clone(),
            limit: page.limit,
        }
    }
}

impl From<WitTokenPage> for TokenPage {
    fn from(page: WitTokenPage) -> Self {
        Self {
            tokens: page.tokens.into_iter().map(TokenEntry::from).collect(),
            next_cursor: page.next_cursor,
        }
    }
}

impl From<WitTokenEntry> for TokenEntry {
    fn from(entry: WitTokenEntry) -> Self {
        Self {
            session_id: crate::types::session_id(&entry.token),
            token: entry.token,
            token_remain_live_time: entry.token_remain_live_time,
            token_expire_time: entry.token_expire_time,
            created_at: entry.created_at,
            last_seen: entry.last_seen,
            attributes: entry.attributes.into(),
        }
    }
}

impl TryFrom<WitUser> for User {
    type Error = Error;

    fn try_from(user: WitUser) -> Result<Self, Error> {
        Ok(Self {
            id: user.id,
            token: user.token,
            token_remain_live_time: user.token_remain_live_time,
            token_expire_time: user.token_expire_time,
            detail: detail(user.detail)?,
        })
    }
}

impl TryFrom<WitUserInfo> for UserInfo {
    type Error = Error;

    fn try_from(user: WitUserInfo) -> Result<Self, Error> {
        Ok(Self {
            id: user.id,
            detail: detail(user.detail)?,
        })
    }
}

impl From<WitConfigKey> for ConfigKey {
    fn from(key: WitConfigKey) -> Self {
        Self {
            name: key.name,
            default: key.default,
            description: key.description,
        }
    }
}
