//! The OpenAPI 3.1 document, generated from the routes' annotations.

use utoipa::openapi::OpenApi as Document;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::{admin, forward_auth as auth, routes};

/// The admin key guarding `/v1` and `/admin`, and the three places
/// `/auth` reads a session token from (the cookie's name is `auth.cookie`,
/// by default `dsession_token`).
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer =
            || SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build());
        components.add_security_scheme("admin_key", bearer());
        components.add_security_scheme("session_bearer", bearer());
        components.add_security_scheme(
            "session_header",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Session-Token"))),
        );
        components.add_security_scheme(
            "session_cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new("dsession_token"))),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "dsession",
        description = "Distributed session tokens: a JSON API for the token operations and forward-auth for gateways. Tokens travel in bodies and headers, never in paths."
    ),
    paths(
        routes::create_token,
        routes::check_token,
        routes::refresh_token,
        routes::revoke_token,
        routes::list_user_tokens,
        routes::revoke_user_tokens,
        routes::add_user,
        routes::delete_user,
        routes::refresh_users,
        routes::reload_policy,
        admin::policy_info,
        admin::events,
        auth::forward_auth,
        auth::forward_auth_prefixed,
        routes::healthz,
        routes::readyz,
        routes::metrics,
        routes::openapi_json,
    ),
    modifiers(&SecuritySchemes)
)]
struct ApiDoc;

/// The service's OpenAPI document.
pub fn openapi() -> Document {
    ApiDoc::openapi()
}
