//! The server under test as a process: starting it (`--spawn`), waiting for
//! its "listening on http://ADDR" line, sampling its CPU time and RSS from
//! /proc, and stopping it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde::Serialize;

/// CPU time and memory of a process at one moment.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ProcSample {
    /// User + system CPU seconds since the process started.
    pub cpu_secs: f64,
    pub rss_kib: u64,
}

/// Reads /proc/PID/stat (utime, stime) and /proc/PID/status (VmRSS).
pub fn sample(pid: u32) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields overall, i.e. the 12th and 13th after ") ".
    let after = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    Some(ProcSample {
        cpu_secs: ticks as f64 / hz,
        rss_kib,
    })
}

/// CPU seconds this process (the client) has used.
pub fn self_cpu_secs() -> f64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: ru is a valid out-pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// A server started by the harness; stopped (SIGTERM, then SIGKILL) on drop.
pub struct ServerProcess {
    child: Child,
    pub addr: SocketAddr,
    pub command: String,
}

impl ServerProcess {
    /// Starts `argv` and waits up to 60 s for it to print
    /// `listening on http://ADDR` on stdout.
    pub fn start(argv: &[String]) -> anyhow::Result<ServerProcess> {
        let (prog, args) = argv
            .split_first()
            .ok_or_else(|| anyhow!("empty server command"))?;
        let command = argv.join(" ");
        let mut child = Command::new(prog)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting server: {command}"))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if !sent {
                    if let Some(i) = line.find("listening on http://") {
                        let addr = line[i + "listening on http://".len()..].trim().to_string();
                        let _ = tx.send(addr);
                        sent = true;
                    }
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                bail!("server did not print 'listening on http://ADDR' within 60 s: {command}");
            }
        };
        let addr: SocketAddr = addr
            .trim_end_matches('/')
            .parse()
            .with_context(|| format!("server printed an unparsable address '{addr}'"))?;
        Ok(ServerProcess {
            child,
            addr,
            command,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn sample(&self) -> Option<ProcSample> {
        sample(self.pid())
    }

    /// Asks the server to shut down, waiting up to 5 s before killing it.
    pub fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // SAFETY: kill with a pid we own.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        for _ in 0..50 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Flags that lift tickwire's per-address limits. Every client of the
/// harness comes from 127.0.0.1, so `--max-connections-per-ip`,
/// `--handshake-rate`, `--max-pending-per-ip` and `--request-rate` would
/// refuse most of a scenario's connections; a spawned tickwire gets these
/// (and room for every connect in flight). The limits themselves are tested
/// in the server's own tests (tests/hostile.rs).
pub const TICKWIRE_UNLIMITED: &str = "--max-connections-per-ip 0 --handshake-rate 0 --max-pending-per-ip 0 --request-rate 0 --max-pending 65536";

/// Expands a server command template: `{listen}`, `{symbols}`, `{rate}`,
/// `{tickwire}` (the release tickwire binary next to this one).
pub fn expand(template: &str, symbols: u32, rate: f64) -> anyhow::Result<Vec<String>> {
    template
        .split_whitespace()
        .map(|w| {
            let mut w = w
                .replace("{listen}", "127.0.0.1:0")
                .replace("{symbols}", &symbols.to_string())
                .replace("{rate}", &rate.to_string());
            if w.contains("{tickwire}") {
                w = w.replace("{tickwire}", &tickwire_binary()?);
            }
            Ok(w)
        })
        .collect()
}

/// The release tickwire binary: next to this executable (both live in
/// target/release), or $TICKWIRE_BIN.
pub fn tickwire_binary() -> anyhow::Result<String> {
    if let Ok(p) = std::env::var("TICKWIRE_BIN") {
        return Ok(p);
    }
    let exe = std::env::current_exe()?;
    let mut dir = exe.parent().map(|p| p.to_path_buf()).unwrap_or_default();
    // Test and bench binaries live one level down, in target/*/deps.
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join("tickwire");
    if !bin.exists() {
        bail!(
            "no tickwire binary at {}: build it with `cargo build --release -p tickwire`, \
             or set TICKWIRE_BIN",
            bin.display()
        );
    }
    Ok(bin.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_own_process() {
        let s = sample(std::process::id()).unwrap();
        assert!(s.rss_kib > 0);
        assert!(s.cpu_secs >= 0.0);
    }

    #[test]
    fn templates_expand() {
        let v = expand(
            "node server.js --listen {listen} --synthetic {symbols} --rate {rate}",
            10,
            100.0,
        )
        .unwrap();
        assert_eq!(
            v,
            [
                "node",
                "server.js",
                "--listen",
                "127.0.0.1:0",
                "--synthetic",
                "10",
                "--rate",
                "100"
            ]
        );
    }
}
