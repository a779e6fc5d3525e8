//! The operator's routes beside the token API: the admin console at
//! `/admin` (its files embedded in the binary), what the policy is
//! (`GET /v1/policy`), and the session events as server-sent events
//! (`GET /v1/events`).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::routes::QueryParams;
use crate::{AppError, AppState, ErrorBody};
use dsession::store::EventId;
use dsession::{EventTail, SessionEvent};

/// The console's content security policy: its own files and API only, no
/// inline script or style, no frames, no forms posted elsewhere.
const CONSOLE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// The console's files: (path under `/admin`, content type, bytes).
const CONSOLE_FILES: [(&str, &str, &str); 4] = [
    (
        "",
        "text/html; charset=utf-8",
        include_str!("console/index.html"),
    ),
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_str!("console/console.js"),
    ),
    (
        "console.css",
        "text/css; charset=utf-8",
        include_str!("console/console.css"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_str!("console/favicon.svg"),
    ),
];

/// How often the event stream asks the store for new events.
const EVENTS_POLL: Duration = Duration::from_millis(200);

/// The latest events an event stream starts with, by default.
const DEFAULT_LAST_EVENTS: usize = 50;

/// The most `last` may ask for.
const MAX_LAST_EVENTS: usize = 1000;

fn unix_seconds(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |since| {
        i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
    })
}

/// The console's file at `name` (`""` for the page), with its CSP; 403
/// when the service has no admin key, since the console would then be
/// open to anyone who reaches it.
pub fn console_file(state: &AppState, name: &str) -> Response {
    if state.0.admin_key.is_none() {
        return AppError::ConsoleClosed.into_response();
    }
    let Some((_, content_type, body)) = CONSOLE_FILES.iter().find(|(path, ..)| *path == name)
    else {
        return AppError::RouteNotFound.into_response();
    };
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONSOLE_CSP),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    ];
    (headers, *body).into_response()
}

/// `GET /admin`: the console's page.
pub async fn console_page(State(state): State<AppState>) -> Response {
    console_file(&state, "")
}

/// `GET /admin/{file}`: the console's script, style sheet and icon.
pub async fn console_asset(
    State(state): State<AppState>,
    axum::extract::Path(file): axum::extract::Path<String>,
) -> Response {
    console_file(&state, &file)
}

/// When the policy in use was loaded, and how the last reload went.
#[derive(Debug)]
pub struct PolicyHistory {
    loaded_at: Mutex<(i64, Option<LastReload>)>,
}

impl PolicyHistory {
    /// A policy loaded now.
    pub fn new() -> Self {
        Self {
            loaded_at: Mutex::new((unix_seconds(SystemTime::now()), None)),
        }
    }

    /// Records a reload: a new policy's load time when it took, and its
    /// outcome either way.
    pub fn reloaded(&self, outcome: Result<(), String>) {
        let now = unix_seconds(SystemTime::now());
        let mut history = self.loaded_at.lock().unwrap_or_else(|p| p.into_inner());
        if outcome.is_ok() {
            history.0 = now;
        }
        history.1 = Some(LastReload {
            at: now,
            ok: outcome.is_ok(),
            error: outcome.err(),
        });
    }

    fn get(&self) -> (i64, Option<LastReload>) {
        self.loaded_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Default for PolicyHistory {
    fn default() -> Self {
        Self::new()
    }
}

/// The last policy reload.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LastReload {
    /// When, as unix seconds.
    pub at: i64,
    /// Whether the new policy took.
    pub ok: bool,
    /// Why not, when it did not.
    pub error: Option<String>,
}

/// One setting the policy reads.
#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyConfigKey {
    /// The key in `[policy.config]`.
    pub name: String,
    /// Its default; null when it is required or has none.
    pub default: Option<String>,
    /// What it does.
    pub description: String,
}

/// The policy that serves, as `GET /v1/policy` answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyInfo {
    /// The built-in policy's name, or the component file's name.
    pub name: String,
    /// The component file; null for a built-in policy.
    pub path: Option<String>,
    /// What it exports.
    pub exports: Vec<String>,
    /// `[policy.config]` as given; the value of a key the policy does not
    /// declare (in `config_keys`) is hidden, as it may be a secret of a
    /// policy that says nothing of its settings.
    pub config: BTreeMap<String, String>,
    /// The settings it says it reads; empty when it does not say.
    pub config_keys: Vec<PolicyConfigKey>,
    /// When the policy in use was loaded, as unix seconds.
    pub loaded_at: i64,
    /// The last reload; null when there was none.
    pub last_reload: Option<LastReload>,
    /// Whether session events are recorded (`[events] enabled`).
    pub events: bool,
}

/// What policy serves: its name, exports, config and its keys, when it
/// was loaded and how the last reload went.
#[utoipa::path(get, path = "/v1/policy", tag = "admin", security(("admin_key" = [])),
    responses((status = 200, body = PolicyInfo), (status = 401, body = ErrorBody),
        (status = 500, description = "The policy failed to describe its settings", body = ErrorBody)))]
pub async fn policy_info(State(state): State<AppState>) -> Result<Json<PolicyInfo>, AppError> {
    let sessions = state.sessions();
    let policy = sessions.policy();
    let config_keys: Vec<PolicyConfigKey> = policy
        .config_keys()
        .await?
        .unwrap_or_default()
        .into_iter()
        .map(|key| PolicyConfigKey {
            name: key.name,
            default: key.default,
            description: key.description,
        })
        .collect();
    let config = state
        .0
        .policy_config
        .iter()
        .map(|(name, value)| {
            let declared = config_keys.iter().any(|key| key.name == *name);
            let shown = match declared {
                true => value.clone(),
                false => "(hidden: the policy does not declare this key)".to_owned(),
            };
            (name.clone(), shown)
        })
        .collect();
    let path = state.0.policy_path.as_ref();
    let builtin = path.is_none_or(|path| {
        dsession::BUILTIN_POLICIES
            .iter()
            .any(|name| path.as_os_str() == *name)
    });
    let name = match path {
        None => "default".to_owned(),
        Some(path) => path.file_name().map_or_else(
            || path.display().to_string(),
            |name| name.to_string_lossy().into_owned(),
        ),
    };
    let (loaded_at, last_reload) = state.0.policy_history.get();
    Ok(Json(PolicyInfo {
        name,
        path: path
            .filter(|_| !builtin)
            .map(|path| path.display().to_string()),
        exports: policy.describe_exports(),
        config,
        config_keys,
        loaded_at,
        last_reload,
        events: sessions.records_events(),
    }))
}

/// The query of `GET /v1/events`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Start after this event id (`{ms}-{seq}`) instead of with the
    /// latest; a `Last-Event-ID` header, as a reconnecting client sends,
    /// takes its place.
    #[param(pattern = r"^[0-9]{1,20}(-[0-9]{1,20})?$")]
    pub after: Option<String>,
    /// How many of the latest events to start with, 0 to 1000; absent
    /// means 50.
    #[param(minimum = 0, maximum = 1000)]
    pub last: Option<usize>,
}

/// Where an event stream starts: after an id, or with the latest `last`.
enum Start {
    After(EventId),
    Latest(usize),
}

fn start(query: &EventsQuery, headers: &HeaderMap) -> Result<Start, AppError> {
    let resume = headers
        .get("last-event-id")
        .map(|value| {
            value
                .to_str()
                .map_err(|_| AppError::BadRequest("Last-Event-ID is not text".into()))
        })
        .transpose()?;
    if let Some(after) = resume.or(query.after.as_deref()) {
        let after =
            EventId::parse(after).map_err(|error| AppError::BadRequest(error.to_string()))?;
        return Ok(Start::After(after));
    }
    let last = query.last.unwrap_or(DEFAULT_LAST_EVENTS);
    if last > MAX_LAST_EVENTS {
        return Err(AppError::BadRequest(format!(
            "last must be at most {MAX_LAST_EVENTS}, got {last}"
        )));
    }
    Ok(Start::Latest(last))
}

/// Session events as server-sent events: first the latest (or those after
/// `after` or `Last-Event-ID`), then each new one as it is recorded, each
/// `event: session` with its id and its JSON. A store failure is sent as
/// `event: error` with the error's JSON, and the stream goes on trying.
#[utoipa::path(get, path = "/v1/events", tag = "admin", params(EventsQuery),
    security(("admin_key" = [])),
    responses((status = 200, content_type = "text/event-stream", description = "`event: session`, `id:` the event's id, `data:` a SessionEvent; `event: error`, `data:` an ErrorBody"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
    QueryParams(query): QueryParams<EventsQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, AppError> {
    let sessions = state.sessions();
    // The first read answers the request, so that a store that is down is
    // a 503 rather than a stream of errors.
    let (tail, first) = match start(&query, &headers)? {
        Start::After(after) => {
            let mut tail = EventTail::after(sessions, after);
            let first = tail.next().await?;
            (tail, first)
        }
        Start::Latest(last) => EventTail::latest(sessions, last).await?,
    };
    let stream = futures_util::stream::unfold(
        (tail, first.into_iter(), false),
        |(mut tail, mut pending, mut failing)| async move {
            loop {
                if let Some(event) = pending.next() {
                    return Some((Ok(sse(&event)), (tail, pending, failing)));
                }
                tokio::time::sleep(EVENTS_POLL).await;
                match tail.next().await {
                    Ok(events) => {
                        failing = false;
                        pending = events.into_iter();
                    }
                    Err(error) if !failing => {
                        let body = ErrorBody::new(error.code(), error.to_string());
                        let event = Event::default()
                            .event("error")
                            .json_data(body)
                            .unwrap_or_default();
                        return Some((Ok(event), (tail, pending, true)));
                    }
                    Err(_) => {}
                }
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(
        KeepAlive::new()
            .interval(Duration::from_secs(15))
            .text("keepalive"),
    ))
}

fn sse(event: &SessionEvent) -> Event {
    Event::default()
        .event("session")
        .id(event.id.clone())
        .json_data(event)
        .unwrap_or_default()
}
