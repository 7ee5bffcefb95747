//! What the integration tests share: a tickwire server on a real socket
//! (port 0) in this process, a real WebSocket client, and raw HTTP GETs.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use fastwebsockets::{Frame, OpCode, Payload, WebSocket};
use http_body_util::Empty;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tickwire::config::Config;
use tickwire::hub::Hub;
use tickwire::server::Server;
use tickwire::shutdown::Shutdown;
use tickwire::state::AppState;
use tickwire_protocol::ServerMessage;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;

/// Every wait in these tests is for an event, bounded by this.
pub const DEADLINE: Duration = Duration::from_secs(15);

/// A tickwire server in this process, on a real socket.
pub struct TestServer {
    pub addr: SocketAddr,
    pub shutdown: Shutdown,
    pub hub: std::sync::Arc<Hub>,
    pub state: std::sync::Arc<AppState>,
    /// Shutdown with notice, as SIGTERM does it.
    pub goodbye: tickwire::server::Goodbye,
    pub task: JoinHandle<()>,
}

/// Starts a server on 127.0.0.1:0 with these extra flags.
pub async fn start(args: &[&str]) -> TestServer {
    start_on(0, args).await
}

/// Starts a server on 127.0.0.1:`port` (0: a free one) with these extra
/// flags. A server that was just stopped may still hold the port for a
/// moment, so binding is retried until [`DEADLINE`].
pub async fn start_on(port: u16, args: &[&str]) -> TestServer {
    let listen = format!("127.0.0.1:{port}");
    let mut argv = vec!["tickwire", "--listen", &listen, "--seed", "7"];
    argv.extend_from_slice(args);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        match Server::bind(Config::parse_from(&argv)).await {
            Ok(server) => return serve(server),
            Err(e) if e.is_addr_in_use() && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("tickwire does not bind {listen}: {e}"),
        }
    }
}

pub async fn start_with(config: Config) -> TestServer {
    serve(Server::bind(config).await.expect("server binds"))
}

fn serve(server: Server) -> TestServer {
    TestServer {
        addr: server.local_addr(),
        shutdown: server.shutdown_handle(),
        hub: server.hub().clone(),
        state: server.state().clone(),
        goodbye: server.goodbye_handle(),
        task: tokio::spawn(server.run()),
    }
}

impl TestServer {
    /// Graceful shutdown: clients get close 1001; returns once `run` has.
    pub async fn stop(self) {
        self.shutdown.trigger();
        within(self.task).await.unwrap();
    }

    pub async fn client(&self, path: &str) -> Client {
        Client::connect(self.addr, path, None).await
    }

    /// Polls `f` until it holds; for server-side state that has no event to
    /// await. Fails after [`DEADLINE`].
    pub async fn until(&self, what: &str, mut f: impl FnMut(&Hub) -> bool) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while !f(&self.hub) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Awaits `f`, failing the test after [`DEADLINE`].
pub async fn within<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(DEADLINE, f)
        .await
        .expect("timed out waiting for an event")
}

struct SpawnExecutor;

impl<Fut> hyper::rt::Executor<Fut> for SpawnExecutor
where
    Fut: Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    fn execute(&self, fut: Fut) {
        tokio::task::spawn(fut);
    }
}

/// What a client can receive.
#[derive(Debug)]
pub enum Msg {
    Json(Value),
    /// A binary tick (`?format=binary`), checked to be the documented layout.
    Binary(tickwire_protocol::BinaryTick),
    Close(u16, String),
    Ping,
}

pub struct Client {
    pub ws: WebSocket<TokioIo<Upgraded>>,
    /// The `welcome` message, which every connection starts with.
    pub welcome: Value,
}

/// The receive buffer of a test client that is to stall: small, so that it
/// backs up fast, yet not below the client crate's `MIN_RECV_BUFFER` (see
/// there): with 4 KiB, Linux could leave a connection crawling on window
/// probes at about 10 KB/s, and a stalled client that reads again would
/// take minutes to reach its close frame.
pub const SMALL_RECV_BUFFER: u32 = 256 * 1024;

impl Client {
    /// Connects to `ws://addr{path}`; `recv_buffer` (e.g.
    /// [`SMALL_RECV_BUFFER`]) shrinks the socket's receive buffer, so that a
    /// client that stops reading backs up fast.
    pub async fn connect(addr: SocketAddr, path: &str, recv_buffer: Option<u32>) -> Client {
        let socket = TcpSocket::new_v4().unwrap();
        if let Some(n) = recv_buffer {
            socket.set_recv_buffer_size(n).unwrap();
        }
        let stream = socket.connect(addr).await.unwrap();
        let req = hyper::Request::builder()
            .uri(format!("http://{addr}{path}"))
            .header("Host", addr.to_string())
            .header("Upgrade", "websocket")
            .header("Connection", "upgrade")
            .header(
                "Sec-WebSocket-Key",
                fastwebsockets::handshake::generate_key(),
            )
            .header("Sec-WebSocket-Version", "13")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let (ws, _) = fastwebsockets::handshake::client(&SpawnExecutor, req, stream)
            .await
            .expect("websocket handshake");
        Client::greeted(ws).await
    }

    /// A client on an upgraded socket, once the server's welcome (which must
    /// come first) has been read.
    async fn greeted(mut ws: WebSocket<TokioIo<Upgraded>>) -> Client {
        ws.set_auto_close(false);
        ws.set_auto_pong(true);
        let mut client = Client {
            ws,
            welcome: Value::Null,
        };
        let welcome = client.json().await;
        assert_eq!(welcome["type"], "welcome", "the first message: {welcome}");
        client.welcome = welcome;
        client
    }

    pub async fn send(&mut self, text: &str) {
        self.ws
            .write_frame(Frame::text(Payload::Owned(text.as_bytes().to_vec())))
            .await
            .unwrap();
    }

    pub async fn send_frame(&mut self, frame: Frame<'_>) {
        self.ws.write_frame(frame).await.unwrap();
    }

    /// The next message, ping or close (with auto-pong off, pings show).
    pub async fn next(&mut self) -> Msg {
        within(async {
            loop {
                let frame = self.ws.read_frame().await.expect("read a frame");
                match frame.opcode {
                    OpCode::Text => {
                        // Every server message must be one the protocol
                        // crate defines: one truth, checked in every test.
                        if let Err(e) = ServerMessage::parse(&frame.payload) {
                            panic!(
                                "not a tickwire-protocol message ({e}): {}",
                                String::from_utf8_lossy(&frame.payload)
                            );
                        }
                        return Msg::Json(serde_json::from_slice(&frame.payload).unwrap_or_else(
                            |e| {
                                panic!(
                                    "not JSON ({e}): {:?}",
                                    String::from_utf8_lossy(&frame.payload)
                                )
                            },
                        ));
                    }
                    OpCode::Close => {
                        let p = &frame.payload;
                        let code = if p.len() >= 2 {
                            u16::from_be_bytes([p[0], p[1]])
                        } else {
                            1005
                        };
                        let reason = String::from_utf8_lossy(p.get(2..).unwrap_or(&[])).into();
                        // Answer like any well-behaved client; the server
                        // may already be gone.
                        let _ = self.ws.write_frame(Frame::close(1000, b"")).await;
                        return Msg::Close(code, reason);
                    }
                    OpCode::Ping => return Msg::Ping,
                    OpCode::Binary => {
                        return Msg::Binary(
                            tickwire_protocol::BinaryTick::parse(&frame.payload)
                                .expect("a binary tick of the documented layout"),
                        )
                    }
                    _ => {}
                }
            }
        })
        .await
    }

    /// The next JSON message (skipping pings); panics on close.
    pub async fn json(&mut self) -> Value {
        loop {
            match self.next().await {
                Msg::Json(v) => return v,
                Msg::Ping => {}
                Msg::Binary(b) => panic!("a binary frame on a JSON connection: {b:?}"),
                Msg::Close(code, reason) => panic!("closed with {code} {reason}"),
            }
        }
    }

    /// The next message of `type`, skipping others.
    pub async fn json_of(&mut self, ty: &str) -> Value {
        loop {
            let v = self.json().await;
            if v["type"] == ty {
                return v;
            }
        }
    }

    /// Skips messages until a close frame.
    pub async fn closed(&mut self) -> (u16, String) {
        loop {
            if let Msg::Close(code, reason) = self.next().await {
                return (code, reason);
            }
        }
    }
}

/// Checks that ticks of each symbol come in seq order with no hole, starting
/// anywhere.
#[derive(Default)]
pub struct SeqCheck {
    last: std::collections::HashMap<String, u64>,
    pub ticks: u64,
}

impl SeqCheck {
    pub fn see(&mut self, v: &Value) {
        let sym = v["sym"].as_str().unwrap().to_string();
        let seq = v["seq"].as_u64().unwrap();
        if let Some(prev) = self.last.insert(sym.clone(), seq) {
            assert_eq!(seq, prev + 1, "{sym}: seq {seq} after {prev}");
        }
        if v["type"] == "tick" {
            self.ticks += 1;
        }
    }
}

/// A raw `GET path` over HTTP/1.1: (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    within(async {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.unwrap();
        let text = String::from_utf8(raw).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, body.to_string())
    })
    .await
}

/// A TCP connection to `addr` from the local address `from` (any
/// 127.0.0.0/8 address works on Linux: tests stand for many clients).
pub async fn connect_from(from: std::net::IpAddr, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    within(socket.connect(addr)).await.unwrap()
}

/// An HTTP response read off a raw socket.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// The head, lower-cased (status line and headers).
    pub head: String,
    pub body: String,
}

impl RawResponse {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        let name = format!("{}:", name.to_ascii_lowercase());
        self.head
            .lines()
            .find_map(|l| l.strip_prefix(name.as_str()))
            .map(str::trim)
    }
}

/// Reads one response (head, then a `content-length` body) off `s`.
pub async fn read_response(s: &mut TcpStream) -> RawResponse {
    within(async {
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "connection closed before a response: {raw:?}");
            raw.extend_from_slice(&buf[..n]);
        };
        let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse().unwrap());
        let mut body = raw[head_end + 4..].to_vec();
        while body.len() < len {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "connection closed inside a body");
            body.extend_from_slice(&buf[..n]);
        }
        RawResponse {
            status,
            head,
            body: String::from_utf8_lossy(&body[..len]).into(),
        }
    })
    .await
}

/// Sends `GET path` (an upgrade if `upgrade`) with extra header lines from
/// `from` and reads the answer.
pub async fn request_from(
    from: std::net::IpAddr,
    addr: SocketAddr,
    path: &str,
    upgrade: bool,
    headers: &[(&str, &str)],
) -> RawResponse {
    let mut s = connect_from(from, addr).await;
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n");
    if upgrade {
        req.push_str(
            "Upgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
        );
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    read_response(&mut s).await
}

/// [`request_from`] 127.0.0.1.
pub async fn request(
    addr: SocketAddr,
    path: &str,
    upgrade: bool,
    headers: &[(&str, &str)],
) -> RawResponse {
    request_from([127, 0, 0, 1].into(), addr, path, upgrade, headers).await
}

impl Client {
    /// Connects over any byte stream (TLS, a socket bound to another source
    /// address) with extra request headers.
    pub async fn connect_over<S>(
        stream: S,
        authority: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Client
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        let mut req = hyper::Request::builder()
            .uri(format!("http://{authority}{path}"))
            .header("Host", authority)
            .header("Upgrade", "websocket")
            .header("Connection", "upgrade")
            .header(
                "Sec-WebSocket-Key",
                fastwebsockets::handshake::generate_key(),
            )
            .header("Sec-WebSocket-Version", "13");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Empty::<Bytes>::new()).unwrap();
        let (ws, _) = within(fastwebsockets::handshake::client(
            &SpawnExecutor,
            req,
            stream,
        ))
        .await
        .expect("websocket handshake");
        Client::greeted(ws).await
    }
}

/// A JWT signed HS256 with `secret`, minted as a deployment would (the
/// jsonwebtoken crate), for servers started with `--auth-secret`.
pub fn jwt(secret: &str, claims: &serde_json::Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()).unwrap(),
    )
    .unwrap()
}
