//! Plumbing for `tests/dashboard.rs`: a chromedriver + headless Chromium
//! session (the server is `tests/common`'s).

use std::io::Write as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

fn tool(env: &str, default: &str) -> PathBuf {
    std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default))
}

/// `target/` of this workspace (or `CARGO_TARGET_DIR`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// Saves a PNG of the current viewport under `target/`.
pub async fn save_screenshot(c: &Client, name: &str) {
    let path = target_dir().join(name);
    match c.screenshot().await {
        Ok(png) => match std::fs::write(&path, png) {
            Ok(()) => eprintln!("dashboard: screenshot saved to {}", path.display()),
            Err(e) => eprintln!("dashboard: cannot write {}: {e}", path.display()),
        },
        Err(e) => eprintln!("dashboard: screenshot failed: {e}"),
    }
}

/// A Chrome DevTools Protocol command sent through chromedriver's
/// `goog/cdp/execute` extension.
#[derive(Debug)]
struct Cdp(serde_json::Value);

impl fantoccini::wd::WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!(
            "session/{}/goog/cdp/execute",
            session.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(self.0.to_string()))
    }
}

/// Emulates a phone screen of `width`×`height` CSS pixels (desktop windows
/// cannot be made narrower than 500 px), or ends the emulation with `None`.
pub async fn emulate_phone(c: &Client, size: Option<(u32, u32)>) -> Result<(), String> {
    let cmd = match size {
        Some((width, height)) => json!({
            "cmd": "Emulation.setDeviceMetricsOverride",
            "params": {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": true},
        }),
        None => json!({"cmd": "Emulation.clearDeviceMetricsOverride", "params": {}}),
    };
    c.issue_cmd(Cdp(cmd))
        .await
        .map(drop)
        .map_err(|e| format!("CDP device emulation: {e}"))
}

/// Resizes the window so that the page's viewport is `width`×`height` CSS
/// pixels (the window size includes whatever frame the browser has).
pub async fn set_viewport(c: &Client, width: u32, height: u32) -> Result<(), String> {
    c.set_window_size(width, height)
        .await
        .map_err(|e| format!("resize: {e}"))?;
    let frame = c
        .execute(
            "return [outerWidth - innerWidth, outerHeight - innerHeight];",
            vec![],
        )
        .await
        .map_err(|e| format!("measure window frame: {e}"))?;
    let dw = frame[0].as_u64().unwrap_or(0) as u32;
    let dh = frame[1].as_u64().unwrap_or(0) as u32;
    if dw > 0 || dh > 0 {
        c.set_window_size(width + dw, height + dh)
            .await
            .map_err(|e| format!("resize: {e}"))?;
    }
    Ok(())
}

/// A free TCP port on localhost (bound, read, released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("no free port")
        .port()
}

/// Kills and reaps the child process when dropped, so a panicking test
/// leaves no chromedriver behind.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// chromedriver driving one headless Chromium session.
pub struct Browser {
    pub client: Client,
    _driver: KillOnDrop,
    profile: PathBuf,
}

impl Browser {
    /// Starts chromedriver and a browser session, or returns `None` (after a
    /// loud message) when the machine has no Chromium outside CI.
    pub async fn launch_or_skip() -> Option<Browser> {
        let chromium = tool("TICKWIRE_CHROMIUM", CHROMIUM);
        let driver = tool("TICKWIRE_CHROMEDRIVER", CHROMEDRIVER);
        let missing: Vec<String> = [&chromium, &driver]
            .into_iter()
            .filter(|p| !p.exists())
            .map(|p| p.display().to_string())
            .collect();
        if !missing.is_empty() {
            let msg = format!(
                "the dashboard browser tests need {} (Debian: apt-get install -y chromium chromium-driver)",
                missing.join(" and ")
            );
            if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
                panic!("CI=true but {msg}");
            }
            // Straight to the process's stderr: the test harness captures
            // eprintln! of passing tests, and this must be seen.
            let line = "*".repeat(72);
            let _ = writeln!(
                std::io::stderr(),
                "\n{line}\nSKIPPED: dashboard end-to-end tests: {msg}\n\
                 (set CI=true to make this a failure)\n{line}\n"
            );
            return None;
        }
        Some(Browser::launch(&chromium, &driver).await)
    }

    async fn launch(chromium: &Path, driver: &Path) -> Browser {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let profile =
            std::env::temp_dir().join(format!("tickwire-chromium-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&profile).expect("create browser profile dir");

        // chromedriver has no "pick a port and tell me": take a free one and
        // retry in the unlikely case someone grabs it first.
        let mut last_err = String::new();
        for _ in 0..3 {
            let port = free_port();
            let child = Command::new(driver)
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", driver.display()));
            let child = KillOnDrop(child);
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            let deadline = Instant::now() + Duration::from_secs(10);
            while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
                if Instant::now() > deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            let caps = json!({
                "browserName": "chrome",
                // The HTTPS step serves a self-signed test certificate.
                "acceptInsecureCerts": true,
                "goog:chromeOptions": {
                    "binary": chromium,
                    "args": [
                        "--headless",
                        "--no-sandbox",
                        "--disable-gpu",
                        "--disable-quic",
                        "--no-first-run",
                        "--disable-background-networking",
                        "--disable-component-update",
                        "--disable-sync",
                        "--disable-dev-shm-usage",
                        "--hide-scrollbars",
                        "--force-device-scale-factor=1",
                        "--window-size=1280,800",
                        format!("--user-data-dir={}", profile.display()),
                    ],
                },
            });
            let serde_json::Value::Object(caps) = caps else {
                unreachable!()
            };
            let connected = ClientBuilder::new(HttpConnector::new())
                .capabilities(caps)
                .connect(&format!("http://{addr}"))
                .await;
            match connected {
                Ok(client) => {
                    return Browser {
                        client,
                        _driver: child,
                        profile,
                    }
                }
                Err(e) => last_err = e.to_string(),
            }
        }
        let _ = std::fs::remove_dir_all(&profile);
        panic!("cannot start a Chromium session through chromedriver: {last_err}");
    }

    /// Ends the session, stops chromedriver, removes the profile.
    pub async fn close(self) {
        if let Err(e) = self.client.close().await {
            eprintln!("dashboard: closing the browser session: {e}");
        }
        drop(self._driver);
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
