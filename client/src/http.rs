//! Plain HTTP GETs to the same server, for what the WebSocket cannot give:
//! the ticks a resume could not replay, from `GET /api/history`.
//!
//! One short-lived HTTP/1.1 connection per request (recovery is rare), a
//! bounded body (a history page is at most 1,000 ticks, well under
//! [`MAX_BODY`]) and a deadline, so a stuck server costs a bounded wait.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use tickwire_protocol::HistoryPage;
use tokio::net::TcpStream;

/// Largest body read: a full page of history is about 150 KB.
const MAX_BODY: usize = 4 << 20;

/// How long one request may take, connect included.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(10);

/// `GET path` from `authority` (`host:port`): the status and the body.
pub(crate) async fn get(authority: &str, path: &str) -> Result<(u16, Bytes), String> {
    let work = async {
        let tcp = TcpStream::connect(authority)
            .await
            .map_err(|e| format!("connect {authority}: {e}"))?;
        tcp.set_nodelay(true).ok();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| e.to_string())?;
        let conn = tokio::spawn(conn);
        let req = http::Request::get(path)
            .header(http::header::HOST, authority)
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let res = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = res.status().as_u16();
        let body = Limited::new(res.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        conn.abort();
        Ok((status, body))
    };
    tokio::time::timeout(TIMEOUT, work)
        .await
        .map_err(|_| format!("GET {path}: no answer within {TIMEOUT:?}"))?
}

/// One page of `symbol`'s history after `from`.
pub(crate) async fn history(
    authority: &str,
    symbol: &str,
    from: u64,
    limit: u32,
) -> Result<HistoryPage, String> {
    let sym: String = form_urlencoded::byte_serialize(symbol.as_bytes()).collect();
    let path = format!("/api/history?symbol={sym}&from={from}&limit={limit}");
    let (status, body) = get(authority, &path).await?;
    if status != 200 {
        return Err(format!(
            "GET {path}: {status} {}",
            String::from_utf8_lossy(&body)
        ));
    }
    HistoryPage::parse(&body).map_err(|e| format!("GET {path}: {e}"))
}
