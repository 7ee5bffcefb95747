//! The listener: accepts TCP connections, serves HTTP/1.1 on them with hyper,
//! upgrades `/ws` to WebSocket sessions, and runs the feed and the reporter.
//!
//! Shutdown ([`Shutdown::trigger`]) stops accepting, closes every session with
//! 1001, and waits (boundedly) for them to finish.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use crate::api::{self, Body};
use crate::config::{Config, Policy};
use crate::feed::Generator;
use crate::hub::{run_feed, Hub, Sessions};
use crate::metrics::Metrics;
use crate::session::{self, SessionContext};
use crate::shutdown::Shutdown;

/// How long shutdown waits for sessions to say goodbye.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// At most `max_connections` WebSocket sessions at once; more get HTTP 503.
#[derive(Clone)]
struct ConnectionLimit(Arc<Semaphore>);

pub struct Server {
    listener: TcpListener,
    ctx: SessionContext,
    generator: Generator,
    shutdown: Shutdown,
    limit: ConnectionLimit,
}

impl Server {
    /// Loads the universe and binds the listener; nothing runs until
    /// [`Server::run`].
    pub async fn bind(config: Config) -> io::Result<Server> {
        let universe = config
            .universe()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let seed = config.seed.unwrap_or_else(rand::random);
        let generator = Generator::new(&universe, seed);
        let listener = listen(config.listen, config.backlog).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot listen on {}: {e}; pick another address with --listen or TICKWIRE_LISTEN",
                    config.listen
                ),
            )
        })?;
        let metrics = Arc::new(Metrics::default());
        let hub = Arc::new(Hub::new(Arc::new(universe), metrics));
        tracing::info!(
            symbols = hub.universe().len(),
            ticks_per_s = hub.universe().total_rate(),
            seed,
            "feed ready"
        );
        Ok(Server {
            listener,
            limit: ConnectionLimit(Arc::new(Semaphore::new(config.max_connections))),
            ctx: SessionContext {
                hub,
                config: Arc::new(config),
                sessions: Arc::new(Sessions::default()),
            },
            generator,
            shutdown: Shutdown::new(),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener")
    }

    pub fn shutdown_handle(&self) -> Shutdown {
        self.shutdown.clone()
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.ctx.hub
    }

    pub fn sessions(&self) -> &Arc<Sessions> {
        &self.ctx.sessions
    }

    /// Serves until shutdown is triggered, then closes every session.
    pub async fn run(self) -> io::Result<()> {
        let Server {
            listener,
            ctx,
            generator,
            shutdown,
            limit,
        } = self;
        let tracker = TaskTracker::new();
        let feed = tokio::spawn(run_feed(ctx.hub.clone(), generator, shutdown.clone()));
        let reporter = tokio::spawn(report(ctx.clone(), shutdown.clone()));

        loop {
            let stream = tokio::select! {
                res = listener.accept() => match res {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors, most likely: back off
                        // instead of spinning, and say what to do.
                        tracing::warn!("accept failed: {e} (if this is 'too many open files', raise `ulimit -n` or lower --max-connections)");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                () = shutdown.triggered() => break,
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(serve_http(
                stream,
                ctx.clone(),
                limit.clone(),
                tracker.clone(),
                shutdown.clone(),
            ));
        }

        drop(listener);
        ctx.sessions.close_all();
        tracker.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                open = ctx.sessions.len(),
                "sessions still open after the shutdown grace period; dropping them"
            );
        }
        let _ = feed.await;
        reporter.abort();
        tracing::info!("shut down");
        Ok(())
    }
}

fn listen(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // Lets a restarted server take its port back at once.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    // tokio's TcpListener::bind uses a backlog of 128, which stalls mass
    // connects; ask for more.
    socket.listen(backlog)
}

/// Serves HTTP/1.1 on one TCP connection until it closes or upgrades.
async fn serve_http(
    stream: tokio::net::TcpStream,
    ctx: SessionContext,
    limit: ConnectionLimit,
    tracker: TaskTracker,
    shutdown: Shutdown,
) {
    let service = service_fn(move |req| {
        let res = route(req, &ctx, &limit, &tracker);
        async move { Ok::<_, std::convert::Infallible>(res) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        res = conn.as_mut() => {
            if let Err(e) = res {
                tracing::debug!("http connection ended: {e}");
            }
        }
        () = shutdown.triggered() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

fn route(
    mut req: Request<Incoming>,
    ctx: &SessionContext,
    limit: &ConnectionLimit,
    tracker: &TaskTracker,
) -> Response<Body> {
    let path = req.uri().path();
    if path != "/ws" || !fastwebsockets::upgrade::is_upgrade_request(&req) {
        return api::handle(req.method(), path, req.uri().query(), ctx);
    }
    let query = req.uri().query();
    let policy = match api::query_param(query, "policy") {
        None => ctx.config.policy,
        Some(p) => match Policy::parse(&p) {
            Some(p) => p,
            None => {
                return api::error(
                    StatusCode::BAD_REQUEST,
                    "policy must be conflate or disconnect",
                )
            }
        },
    };
    let symbols = api::query_param(query, "symbols")
        .map(|s| api::split_symbols(&s))
        .unwrap_or_default();
    let Ok(permit) = limit.0.clone().try_acquire_owned() else {
        ctx.hub
            .metrics()
            .rejected_connections
            .fetch_add(1, Ordering::Relaxed);
        return api::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many connections; try again later",
        );
    };
    let (response, upgrade) = match fastwebsockets::upgrade::upgrade(&mut req) {
        Ok(x) => x,
        Err(e) => return api::error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let ctx = ctx.clone();
    tracker.spawn(async move {
        session::run(upgrade, ctx, policy, symbols).await;
        drop(permit);
    });
    response.map(|_| Body::default())
}

/// Rolls the metrics every second and logs a summary line now and then.
async fn report(ctx: SessionContext, shutdown: Shutdown) {
    let metrics = ctx.hub.metrics().clone();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let every = ctx.config.summary.as_secs().max(1);
    let mut n = 0u64;
    loop {
        tick.tick().await;
        if shutdown.is_triggered() {
            return;
        }
        metrics.roll();
        n += 1;
        if n.is_multiple_of(every) {
            let s = metrics.stats(ctx.hub.universe().len(), ctx.sessions.queued());
            tracing::info!(
                "{:.0} ticks/s, {:.0} msgs/s ({:.1} per write), {} connections, latency p50 {:.0} µs p99 {:.0} µs, conflated {}",
                s.rates.ticks_per_s,
                s.rates.msgs_per_s,
                s.rates.msgs_per_write,
                s.connections,
                s.latency_us.window_10s.p50,
                s.latency_us.window_10s.p99,
                s.totals.conflated,
            );
        }
    }
}
