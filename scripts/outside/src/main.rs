//! A router protected by `RequireSessionLayer`, on the packaged crates: a
//! request without a token is refused, one with a live token reaches the
//! route and sees its user.

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::routing::get;
use dsession::tower::RequireSessionLayer;
use dsession::{Authenticated, Authenticator, SessionManager};
use tower::ServiceExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sessions = SessionManager::builder().build_checked().await?;
    let issued = sessions.set_token("alice", 3600).await?;
    let app = Router::new()
        .route(
            "/me",
            get(|Authenticated(user): Authenticated| async move { user.id }),
        )
        .layer(RequireSessionLayer::new(Authenticator::new(sessions)));

    let anonymous = Request::get("/me").body(Body::empty())?;
    let refused = app.clone().oneshot(anonymous).await?;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);

    let signed_in = Request::get("/me")
        .header(header::AUTHORIZATION, format!("Bearer {}", issued.token))
        .body(Body::empty())?;
    let allowed = app.oneshot(signed_in).await?;
    assert_eq!(allowed.status(), StatusCode::OK);
    println!(
        "a router outside the workspace, on the packaged crates: 401 without a token, 200 with one"
    );
    Ok(())
}
