//! The `tickwire` binary: parses the command line, sets up logging and the
//! runtime, and runs until SIGINT or SIGTERM one of: the server with its own
//! generator (`tickwire`, `tickwire serve`), the generator publishing to
//! NATS (`tickwire feed`), or the server fed from NATS (`tickwire gateway`).

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tickwire::config::{Cli, Command, Config, NatsArgs};
use tickwire::server::Server;
use tickwire::shutdown::Shutdown;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let command = Cli::parse().command();
    // Logs go to stderr, so stdout carries only the "listening on" lines
    // that scripts wait for.
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match command {
        Command::Serve(config) => serve(config, None),
        Command::Gateway(g) => serve(g.server, Some(g.nats)),
        Command::Feed(feed) => {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("tickwire: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            runtime.block_on(async {
                let shutdown = Shutdown::new();
                let trigger = shutdown.clone();
                tokio::spawn(async move {
                    wait_for_signal().await;
                    tracing::info!("signal received; stopping the feed");
                    trigger.trigger();
                });
                match tickwire::source::nats::feed::run(feed, shutdown).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("tickwire feed: {e}");
                        ExitCode::FAILURE
                    }
                }
            })
        }
    }
}

/// The server, with its own generator or (`nats`) fed from a feed.
fn serve(config: Config, nats: Option<NatsArgs>) -> ExitCode {
    // Every connection is a file descriptor: take all the kernel allows.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) if (n as usize) < config.max_connections + 64 => tracing::warn!(
            "open-file limit is {n}, below --max-connections {}; connects beyond it will fail (raise `ulimit -Hn`)",
            config.max_connections
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!("cannot raise the open-file limit: {e}"),
    }

    // One worker (the default on 2 cores): a current-thread runtime, and the
    // source runs on it too (Server::run), so the feed's wake-ups of the
    // writers stay on one thread: no futex, no contended outbox locks.
    // More workers: a multi-thread runtime and the source on its own thread.
    // Why, with the measurements: bench/README.md, "Runtime configuration".
    let mut runtime = match config.worker_threads() {
        1 => tokio::runtime::Builder::new_current_thread(),
        n => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
    };
    runtime.enable_all();
    let runtime = match runtime.build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tickwire: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let server = match Server::bind_with(config, nats).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("tickwire: {e}");
                return ExitCode::FAILURE;
            }
        };
        let addr = server.local_addr();
        println!("tickwire listening on http://{addr}");
        println!("  dashboard  http://{addr}/");
        println!("  websocket  ws://{addr}/ws?symbols=AAPL,MSFT");
        println!("  metrics    http://{addr}/metrics   stats http://{addr}/api/stats");
        let shutdown = server.shutdown_handle();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("signal received; closing every connection with 1001");
            shutdown.trigger();
        });
        server.run().await;
        ExitCode::SUCCESS
    })
}

async fn wait_for_signal() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(e) => {
            tracing::warn!("cannot watch SIGTERM ({e}); only Ctrl-C stops the server gracefully");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
