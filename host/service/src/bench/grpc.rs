//! The client of the gRPC `Check` figure: tonic's channel (one HTTP/2
//! connection), one per task, in this process, asking as Envoy does.

use std::net::SocketAddr;

use anyhow::Context as _;
use envoy_types::ext_authz::v3::pb::CheckRequest;
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, attribute_context};
use tonic::transport::Channel;

/// One channel that sends the same `Check` again and again.
pub(super) struct Grpc {
    client: AuthorizationClient<Channel>,
    request: CheckRequest,
}

impl Grpc {
    /// Connects to the gRPC listener at `address` to check a `GET /` with
    /// `token` as its bearer.
    pub(super) async fn connect(address: SocketAddr, token: &str) -> anyhow::Result<Self> {
        let channel = Channel::from_shared(format!("http://{address}"))
            .context("invalid gRPC address")?
            .tcp_nodelay(true)
            .connect()
            .await
            .context("cannot connect to the gRPC listener")?;
        let http = attribute_context::HttpRequest {
            method: "GET".into(),
            path: "/".into(),
            headers: [("authorization".to_owned(), format!("Bearer {token}"))].into(),
            ..attribute_context::HttpRequest::default()
        };
        let request = CheckRequest {
            attributes: Some(AttributeContext {
                request: Some(attribute_context::Request {
                    http: Some(http),
                    ..attribute_context::Request::default()
                }),
                ..AttributeContext::default()
            }),
        };
        Ok(Self {
            client: AuthorizationClient::new(channel),
            request,
        })
    }

    /// Sends the check; returns the status code of its answer (0: allowed).
    pub(super) async fn check(&mut self) -> Result<i32, tonic::Status> {
        let response = self.client.check(self.request.clone()).await?;
        Ok(response.into_inner().status.map_or(0, |status| status.code))
    }
}
