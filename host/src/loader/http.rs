//! The HTTP user loader: `GET` a URL made from a template and the user id.

use std::time::Duration;

use anyhow::Context as _;

use crate::error::SetupError;
use async_trait::async_trait;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use super::{LoadFailure, LoaderError, UserLoader};

/// Where `{id}` stands in a URL template.
const ID_PLACEHOLDER: &str = "{id}";
/// Everything but RFC 3986's unreserved characters is encoded, so an id is
/// safe in a path segment and in a query alike.
const ID_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
/// The largest detail body read; a bigger one is an invalid detail.
const MAX_BODY_BYTES: usize = 1 << 20;

/// How the HTTP loader reaches the user service.
#[derive(Clone)]
pub struct HttpLoaderConfig {
    /// `http(s)://…` with `{id}` where the percent-encoded user id goes,
    /// e.g. `http://users.internal/users/{id}`.
    pub url: String,
    /// Extra request headers.
    pub headers: Vec<(String, String)>,
    /// Sent as `Authorization: Bearer <token>` when set.
    pub bearer_token: Option<String>,
    /// The longest one request may take, connecting included.
    pub timeout: Duration,
    /// Readiness: a URL that answers 2xx when the service is up. Without
    /// it, readiness means the template's host accepts connections.
    pub ready_url: Option<String>,
}

impl std::fmt::Debug for HttpLoaderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Header values and the bearer token stay out of logs.
        f.debug_struct("HttpLoaderConfig")
            .field("url", &self.url)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl HttpLoaderConfig {
    /// A config for `url` with a 2 s timeout and no extra headers.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            headers: Vec::new(),
            bearer_token: None,
            timeout: Duration::from_secs(2),
            ready_url: None,
        }
    }
}

/// Loads a user's detail from an HTTP service: 200 with a JSON body is the
/// detail, 404 means no detail, any other status is a loader error naming
/// it. A connection error is retried once; a timeout is not.
#[derive(Debug)]
pub struct HttpLoader {
    client: reqwest::Client,
    template: String,
    ready_url: Option<String>,
    /// The template's host and port, for readiness without `ready_url`.
    origin: (String, u16),
    timeout: Duration,
}

impl HttpLoader {
    /// Checks the config and builds the client; connects nothing yet.
    pub fn new(config: HttpLoaderConfig) -> Result<Self, SetupError> {
        Self::build(config).map_err(|e| SetupError::Loader(format!("{e:#}")))
    }

    fn build(config: HttpLoaderConfig) -> anyhow::Result<Self> {
        anyhow::ensure!(
            config.url.contains(ID_PLACEHOLDER),
            "the loader URL {:?} has no {ID_PLACEHOLDER} for the user id",
            config.url
        );
        let sample = url::Url::parse(&config.url.replace(ID_PLACEHOLDER, "x"))
            .with_context(|| format!("the loader URL {:?} is not a URL", config.url))?;
        anyhow::ensure!(
            matches!(sample.scheme(), "http" | "https"),
            "the loader URL {:?} is not http or https",
            config.url
        );
        let host = sample
            .host_str()
            .with_context(|| format!("the loader URL {:?} has no host", config.url))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = sample
            .port_or_known_default()
            .with_context(|| format!("the loader URL {:?} has no port", config.url))?;
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .with_context(|| format!("invalid loader header name {name:?}"))?;
            let mut value = HeaderValue::from_str(value)
                .with_context(|| format!("invalid value for loader header {name}"))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        if let Some(token) = &config.bearer_token {
            let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
                .context("the loader's bearer token is not a valid header value")?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .build()
            .context("cannot build the loader's HTTP client")?;
        Ok(Self {
            client,
            template: config.url,
            ready_url: config.ready_url,
            origin: (host, port),
            timeout: config.timeout,
        })
    }

    fn url_for(&self, user_id: &str) -> String {
        self.template.replace(
            ID_PLACEHOLDER,
            &utf8_percent_encode(user_id, ID_ENCODE).to_string(),
        )
    }

    fn failure(&self, user_id: &str, error: &reqwest::Error) -> LoadFailure {
        if error.is_timeout() {
            LoadFailure::Timeout {
                user_id: user_id.to_owned(),
                timeout: self.timeout,
            }
        } else {
            LoadFailure::Unavailable(error_chain(error))
        }
    }
}

/// An error and its sources on one line: reqwest's own message rarely says
/// why a connection failed.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The body, refused past [`MAX_BODY_BYTES`].
async fn read_body(
    mut response: reqwest::Response,
    user_id: &str,
) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_BODY_BYTES {
            tracing::warn!(user_id, "the user source sent a detail over 1 MiB");
            break;
        }
    }
    Ok(body)
}

#[async_trait]
impl UserLoader for HttpLoader {
    async fn load(&self, user_id: &str) -> Result<Option<Value>, LoaderError> {
        let url = self.url_for(user_id);
        let response = match self.client.get(&url).send().await {
            Err(error) if error.is_connect() => self.client.get(&url).send().await,
            sent => sent,
        }
        .map_err(|error| self.failure(user_id, &error))?;
        match response.status() {
            StatusCode::OK => {
                let body = read_body(response, user_id)
                    .await
                    .map_err(|error| self.failure(user_id, &error))?;
                let invalid = |reason: String| LoadFailure::InvalidDetail {
                    user_id: user_id.to_owned(),
                    reason,
                };
                if body.len() > MAX_BODY_BYTES {
                    return Err(invalid(format!("larger than {MAX_BODY_BYTES} bytes")).into());
                }
                let detail: Value =
                    serde_json::from_slice(&body).map_err(|e| invalid(e.to_string()))?;
                Ok(Some(detail))
            }
            StatusCode::NOT_FOUND => Ok(None),
            status => Err(LoadFailure::Status {
                user_id: user_id.to_owned(),
                status: status.as_u16(),
            }
            .into()),
        }
    }

    async fn ready(&self) -> Result<(), LoaderError> {
        match &self.ready_url {
            Some(url) => {
                let response = self
                    .client
                    .get(url)
                    .send()
                    .await
                    .map_err(|error| LoadFailure::Unavailable(error_chain(&error)))?;
                if response.status().is_success() {
                    Ok(())
                } else {
                    Err(LoadFailure::Unavailable(format!(
                        "{url} answered HTTP {}",
                        response.status().as_u16()
                    ))
                    .into())
                }
            }
            None => {
                let (host, port) = &self.origin;
                tokio::net::TcpStream::connect((host.as_str(), *port))
                    .await
                    .map_err(|error| {
                        LoadFailure::Unavailable(format!(
                            "cannot connect to {host}:{port}: {error}"
                        ))
                    })?;
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_id_is_percent_encoded_into_the_template() {
        let loader =
            HttpLoader::new(HttpLoaderConfig::new("http://users.test/u/{id}?v=1")).unwrap();
        assert_eq!(
            loader.url_for("a b/c?d_e.f~é"),
            "http://users.test/u/a%20b%2Fc%3Fd_e.f~%C3%A9?v=1"
        );
    }

    #[test]
    fn a_template_needs_the_placeholder_and_http() {
        assert!(HttpLoader::new(HttpLoaderConfig::new("http://users.test/u")).is_err());
        assert!(HttpLoader::new(HttpLoaderConfig::new("ftp://users.test/{id}")).is_err());
        assert!(HttpLoader::new(HttpLoaderConfig::new("not a url {id}")).is_err());
    }
}
