//! Authenticating a request by its session token, on `http` types, for any
//! gateway or framework: where the token is read from, what the outcome
//! means, and the headers an upstream receives.

use base64::Engine as _;
use http::{HeaderMap, HeaderName, HeaderValue, header};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

use crate::error::Error;
use crate::manager::SessionManager;
use crate::types::{SessionAttributes, User};

/// `X-Session-Token`: a token for clients that cannot set `Authorization`.
pub const SESSION_TOKEN_HEADER: &str = "x-session-token";
/// The user id of a valid token, for the upstream: its UTF-8 bytes, with
/// every byte that is not visible ASCII, and `%` and `,`, percent-encoded.
pub const USER_ID_HEADER: &str = "x-user-id";
/// The user's detail, for the upstream: base64url (no padding) of its JSON.
pub const USER_DETAIL_HEADER: &str = "x-user-detail";
/// The cookie a token is read from unless [`Authenticator::with_cookie`]
/// names another.
pub const DEFAULT_COOKIE: &str = "dsession_token";

/// What a request's token says, when something can be said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authentication {
    /// The token is live; this is its user.
    Valid(User),
    /// The request carries no token.
    Missing,
    /// The request carries a token that is not live: unknown, expired,
    /// revoked or malformed.
    Rejected,
}

/// Checks the session token of a request.
///
/// The token comes from `Authorization: Bearer`, then `X-Session-Token`,
/// then the session cookie (percent-decoded), each read as UTF-8 bytes.
/// [`Self::authenticate`] answers [`Authentication::Valid`], `Missing` or
/// `Rejected`, and returns an error only when nothing can be said about
/// the token: the store, the loader or the policy failed. Turn such an
/// error into a 503 (see [`Error::status`]), never into a 401, or an
/// outage logs everybody out.
///
/// Cloning is cheap. Options are set by value and say their defaults:
///
/// ```
/// # fn example(sessions: dsession::SessionManager) {
/// let authenticator = dsession::Authenticator::new(sessions)
///     .with_cookie("sid")            // default: dsession_token
///     .with_load_user(600)           // default: no detail, check-token only
///     .with_sliding_expiry(3600);    // default: tokens keep their expiry
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Authenticator {
    sessions: SessionManager,
    cookie: String,
    load_user_ttl: Option<i64>,
    sliding_seconds: Option<i64>,
    no_detail_on_loader_error: bool,
}

impl Authenticator {
    /// Checks tokens with `sessions`: no detail, no sliding expiry, the
    /// cookie [`DEFAULT_COOKIE`].
    pub fn new(sessions: SessionManager) -> Self {
        Self {
            sessions,
            cookie: DEFAULT_COOKIE.into(),
            load_user_ttl: None,
            sliding_seconds: None,
            no_detail_on_loader_error: false,
        }
    }

    /// Reads the token from cookie `name` when no header carries one.
    pub fn with_cookie(mut self, name: impl Into<String>) -> Self {
        self.cookie = name.into();
        self
    }

    /// Loads the user's detail with each check (check-token-or-update-user):
    /// from the user-info cache, else from the loader, then cached for
    /// `user_ttl` seconds (0: the default expiry). The service's
    /// `auth.load_user` and `auth.user_ttl`.
    pub fn with_load_user(mut self, user_ttl: i64) -> Self {
        self.load_user_ttl = Some(user_ttl);
        self
    }

    /// Extends every valid token to `ttl_seconds` from now (0: the default
    /// expiry), one more round trip per check. The service's
    /// `auth.sliding_expiry`.
    pub fn with_sliding_expiry(mut self, ttl_seconds: i64) -> Self {
        self.sliding_seconds = Some(ttl_seconds);
        self
    }

    /// With [`Self::with_load_user`]: when the loader fails, answer valid
    /// without detail (a plain check) instead of the loader's error.
    pub fn without_detail_on_loader_error(mut self) -> Self {
        self.no_detail_on_loader_error = true;
        self
    }

    /// The manager tokens are checked with.
    pub fn sessions(&self) -> &SessionManager {
        &self.sessions
    }

    /// The token a request presents: `Authorization: Bearer`, then
    /// `X-Session-Token`, then the session cookie; trimmed, never empty.
    pub fn token(&self, headers: &HeaderMap) -> Option<String> {
        presented_token(headers, &self.cookie)
    }

    /// Checks the token `headers` present.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Authentication, Error> {
        self.authenticate_from(headers, None).await
    }

    /// [`Self::authenticate`] of a request whose client is known, which the
    /// policy may keep ([`SessionManager::check_token_from`]).
    pub async fn authenticate_from(
        &self,
        headers: &HeaderMap,
        client: Option<&SessionAttributes>,
    ) -> Result<Authentication, Error> {
        match self.token(headers) {
            Some(token) => self.authenticate_token_from(&token, client).await,
            None => Ok(Authentication::Missing),
        }
    }

    /// Checks `token`, then slides its expiry when configured.
    pub async fn authenticate_token(&self, token: &str) -> Result<Authentication, Error> {
        self.authenticate_token_from(token, None).await
    }

    /// [`Self::authenticate_token`] of a request whose client is known.
    pub async fn authenticate_token_from(
        &self,
        token: &str,
        client: Option<&SessionAttributes>,
    ) -> Result<Authentication, Error> {
        let user = match self.check_from(token, self.load_user_ttl, client).await {
            Ok(Some(user)) => user,
            // A token the policy cannot even parse is as invalid as an
            // unknown one.
            Ok(None) | Err(Error::InvalidArgument(_)) => {
                tracing::debug!(token = redact(token), "a session token was rejected");
                return Ok(Authentication::Rejected);
            }
            Err(error) => return Err(error),
        };
        if let Some(seconds) = self.sliding_seconds {
            match self.sessions.refresh_token(token, seconds).await {
                Ok(_) => {}
                Err(Error::NotFound) => return Ok(Authentication::Rejected),
                Err(error) => return Err(error),
            }
        }
        Ok(Authentication::Valid(user))
    }

    /// The user of a live token, `None` when it is not live: check-token,
    /// or with `user_ttl_seconds` check-token-or-update-user (falling back
    /// to a plain check when the loader fails, if so configured). No
    /// sliding expiry; a malformed token is an [`Error::InvalidArgument`].
    pub async fn check(
        &self,
        token: &str,
        user_ttl_seconds: Option<i64>,
    ) -> Result<Option<User>, Error> {
        self.check_from(token, user_ttl_seconds, None).await
    }

    /// [`Self::check`] of a request whose client is known.
    pub async fn check_from(
        &self,
        token: &str,
        user_ttl_seconds: Option<i64>,
        client: Option<&SessionAttributes>,
    ) -> Result<Option<User>, Error> {
        let Some(ttl) = user_ttl_seconds else {
            return self.sessions.check_token_from(token, client).await;
        };
        match self
            .sessions
            .check_token_or_update_user_from(token, ttl, client)
            .await
        {
            // A plain check answers without detail and caches nothing, so
            // the failure is not remembered as "no detail".
            Err(Error::Loader(reason)) if self.no_detail_on_loader_error => {
                tracing::warn!(%reason, "the user loader failed; answering without detail");
                self.sessions.observer().loader_fallback();
                self.sessions.check_token_from(token, client).await
            }
            checked => checked,
        }
    }

    /// The headers an upstream receives for `user`: [`USER_ID_HEADER`],
    /// and [`USER_DETAIL_HEADER`] when the user has detail.
    pub fn upstream_headers(user: &User) -> HeaderMap {
        let mut headers = HeaderMap::with_capacity(2);
        headers.insert(
            HeaderName::from_static(USER_ID_HEADER),
            header_safe(&user.id),
        );
        if let Some(detail) = &user.detail {
            let encoded =
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(detail.to_string());
            headers.insert(
                HeaderName::from_static(USER_DETAIL_HEADER),
                HeaderValue::from_str(&encoded).expect("base64 is a valid header value"),
            );
        }
        headers
    }
}

/// A header's value as UTF-8: tokens of non-ASCII user ids travel as raw
/// UTF-8 bytes, which `HeaderValue::to_str` refuses.
fn utf8(value: &HeaderValue) -> Option<&str> {
    std::str::from_utf8(value.as_bytes()).ok()
}

/// The credentials of `Authorization: Bearer …`, trimmed.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = utf8(headers.get(header::AUTHORIZATION)?)?;
    let (scheme, credentials) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| credentials.trim())
}

/// The value of cookie `name`, percent-decoded. Each `name=value` pair is
/// read on its own, so a neighbour that is not UTF-8 spoils nothing.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b';'))
        .filter_map(|pair| {
            let split = pair.iter().position(|&b| b == b'=')?;
            let (key, value) = (pair[..split].trim_ascii(), &pair[split + 1..]);
            (key == name.as_bytes()).then_some(value.trim_ascii())
        })
        .find_map(|value| {
            let value = value
                .strip_prefix(b"\"")
                .and_then(|v| v.strip_suffix(b"\""))
                .unwrap_or(value);
            let decoded: Vec<u8> = percent_encoding::percent_decode(value).collect();
            String::from_utf8(decoded).ok()
        })
}

fn presented_token(headers: &HeaderMap, cookie_name: &str) -> Option<String> {
    // One allocation: a header's token is trimmed before it is copied.
    match bearer(headers).or_else(|| utf8(headers.get(SESSION_TOKEN_HEADER)?)) {
        Some(token) => Some(token.trim().to_owned()),
        None => cookie(headers, cookie_name).map(|token| token.trim().to_owned()),
    }
    .filter(|token| !token.is_empty())
}

/// A token as logs may show it: its length and a 32-bit fingerprint, the
/// same for the same token in every process of one build, so that log
/// lines about one token can be matched. The token's form is the policy's,
/// so none of the token itself is shown.
pub fn redact(token: &str) -> String {
    use std::hash::{DefaultHasher, Hash as _, Hasher as _};
    let mut hasher = DefaultHasher::new();
    token.hash(&mut hasher);
    // The low half of the hash: enough to tell tokens apart in a log.
    let fingerprint = hasher.finish() as u32;
    format!("<{} bytes #{fingerprint:08x}>", token.len())
}

/// Bytes of a user id that `X-User-Id` percent-encodes: all but visible
/// ASCII, and `%` and `,` (an upstream that splits list headers at commas
/// must not read two users).
const USER_ID_ENCODED: &AsciiSet = &CONTROLS.add(b' ').add(b'%').add(b',');

/// A user id as a header value: its UTF-8 bytes, with every byte that is
/// not visible ASCII, and `%` and `,`, percent-encoded as `%XX`.
fn header_safe(user_id: &str) -> HeaderValue {
    let text = utf8_percent_encode(user_id, USER_ID_ENCODED).to_string();
    HeaderValue::from_str(&text).expect("visible ASCII is a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_comes_from_bearer_then_header_then_cookie() {
        // Each place added outranks those before it.
        let mut headers = HeaderMap::new();
        for (name, value, token) in [
            (
                header::COOKIE,
                "a=1; dsession_token=from-cookie",
                "from-cookie",
            ),
            (
                HeaderName::from_static(SESSION_TOKEN_HEADER),
                "from-header",
                "from-header",
            ),
            (header::AUTHORIZATION, "bearer from-bearer", "from-bearer"),
        ] {
            headers.insert(name, HeaderValue::from_static(value));
            assert_eq!(
                presented_token(&headers, "dsession_token").as_deref(),
                Some(token)
            );
        }
        assert_eq!(presented_token(&HeaderMap::new(), "dsession_token"), None);
    }

    #[test]
    fn tokens_of_non_ascii_users_are_read_from_every_place() {
        let token = "józef_0123456789abcdef0123456789abcdef";
        let raw = HeaderValue::from_bytes(token.as_bytes()).unwrap();
        for (name, value) in [
            (
                header::AUTHORIZATION,
                HeaderValue::from_bytes(format!("Bearer {token}").as_bytes()).unwrap(),
            ),
            (HeaderName::from_static(SESSION_TOKEN_HEADER), raw.clone()),
            (
                header::COOKIE,
                HeaderValue::from_bytes(format!("dsession_token={token}").as_bytes()).unwrap(),
            ),
            (
                header::COOKIE,
                HeaderValue::from_static(
                    "dsession_token=j%C3%B3zef_0123456789abcdef0123456789abcdef",
                ),
            ),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(name.clone(), value);
            assert_eq!(
                presented_token(&headers, "dsession_token").as_deref(),
                Some(token),
                "from {name}"
            );
        }
    }

    #[test]
    fn a_non_ascii_neighbour_cookie_does_not_hide_the_session_cookie() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_bytes("lang=é; dsession_token=T".as_bytes()).unwrap(),
        );
        assert_eq!(
            presented_token(&headers, "dsession_token").as_deref(),
            Some("T")
        );
        headers.insert(
            header::COOKIE,
            HeaderValue::from_bytes(b"bad=\xff\xfe;dsession_token=\"U\"").unwrap(),
        );
        assert_eq!(
            presented_token(&headers, "dsession_token").as_deref(),
            Some("U")
        );
    }

    #[test]
    fn user_ids_become_header_safe() {
        assert_eq!(header_safe("alice_b"), "alice_b");
        assert_eq!(header_safe("a b%é"), "a%20b%25%C3%A9");
        assert_eq!(header_safe("admin, bob"), "admin%2C%20bob");
    }

    #[test]
    fn logs_see_a_fingerprint_and_nothing_of_the_token() {
        let token = "alice_0123456789abcdef0123456789abcdef";
        let shown = redact(token);
        assert_eq!(shown, redact(token));
        assert_ne!(shown, redact("alice_0123456789abcdef0123456789abcdee"));
        assert!(shown.starts_with("<38 bytes #"), "{shown}");
        assert!(
            !shown.contains("alice") && !shown.contains("0123"),
            "{shown}"
        );
    }
}
