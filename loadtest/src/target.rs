//! The server's WebSocket URL as every connection of a run dials it: the
//! socket address, the Host header and the request target. Parsed once per
//! run by [`crate::measure`], copied to each worker thread.

use std::net::SocketAddr;

/// Where and how every connection of a run connects.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// Host header value.
    pub host: String,
    /// Request target, e.g. `/ws?policy=conflate`.
    pub path: String,
}

impl Target {
    /// Parses `ws://host:port/path?query` (host must resolve; load tests
    /// target 127.0.0.1).
    pub fn parse(url: &str) -> anyhow::Result<Target> {
        use std::net::ToSocketAddrs;
        let rest = url.strip_prefix("ws://").ok_or_else(|| {
            anyhow::anyhow!("URL must start with ws:// (got {url}); wss is not supported")
        })?;
        let (hostport, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let addr = hostport
            .to_socket_addrs()
            .map_err(|e| anyhow::anyhow!("cannot resolve {hostport}: {e}"))?
            .next()
            .ok_or_else(|| anyhow::anyhow!("{hostport} resolves to no address"))?;
        Ok(Target {
            addr,
            host: hostport.to_string(),
            path: path.to_string(),
        })
    }

    /// The same target with `key=value` appended to the query string.
    pub fn with_query(&self, key: &str, value: &str) -> Target {
        let sep = if self.path.contains('?') { '&' } else { '?' };
        Target {
            path: format!("{}{sep}{key}={value}", self.path),
            ..self.clone()
        }
    }
}
