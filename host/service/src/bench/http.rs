//! The client of the `/auth` and `/healthz` figures: hyper's HTTP/1.1
//! connection, kept alive, one per task, in this process.

use std::net::SocketAddr;

use anyhow::Context as _;
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{AUTHORIZATION, HOST, HeaderValue};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// One keep-alive connection that sends the same `GET` again and again.
pub(super) struct Http {
    sender: SendRequest<Empty<Bytes>>,
    uri: Uri,
    host: HeaderValue,
    authorization: HeaderValue,
}

impl Http {
    /// Connects to the service at `address` to `GET path` with `token`.
    pub(super) async fn connect(
        address: SocketAddr,
        path: &str,
        token: &str,
    ) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(address)
            .await
            .context("cannot connect to the service")?;
        stream.set_nodelay(true)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .context("cannot start HTTP/1.1 with the service")?;
        // Drives the connection until the sender is dropped.
        tokio::spawn(connection);
        Ok(Self {
            sender,
            uri: path.parse().context("invalid path")?,
            host: HeaderValue::from_str(&address.to_string())?,
            authorization: HeaderValue::from_str(&format!("Bearer {token}"))?,
        })
    }

    /// Sends the request and reads the whole response; returns its status.
    pub(super) async fn get(&mut self) -> Result<u16, hyper::Error> {
        let mut request = Request::new(Empty::new());
        *request.uri_mut() = self.uri.clone();
        let headers = request.headers_mut();
        headers.insert(HOST, self.host.clone());
        headers.insert(AUTHORIZATION, self.authorization.clone());
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let status = response.status().as_u16();
        // The body is read to its end, so that the connection serves the next request.
        response.into_body().collect().await?;
        Ok(status)
    }
}
