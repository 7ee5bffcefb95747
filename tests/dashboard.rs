//! End-to-end tests of the browser dashboard (`GET /`) in a real headless
//! Chromium, driven over WebDriver (fantoccini + chromedriver) against an
//! in-process tickwire server on real sockets.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian: `apt-get
//! install chromium chromium-driver`; override with `TICKWIRE_CHROMIUM` /
//! `TICKWIRE_CHROMEDRIVER`). Without them the test is skipped with a loud
//! message, unless `CI=true`, where it fails.
//!
//! One browser session walks through: load and connect, live prices, add
//! (mouse and keyboard) and remove symbols through the picker and the table,
//! reload (selection kept), the whole universe at once (frames keep coming),
//! server stop ("reconnecting in N s") and restart on the same port (live
//! again), a burst of removals (no rate_limited), phone width; then once
//! more over HTTPS with token auth (the page's `?token=` reaches the
//! server); no JavaScript errors and no server error replies throughout.
//!
//! A second session checks the fallback: behind a proxy that refuses
//! WebSocket upgrades the page streams over Server-Sent Events; the proxy
//! then cuts the connection mid-stream, the page's EventSource reconnects by
//! itself (with `Last-Event-ID`) and every seq arrives exactly once. It also
//! turns on the calm (throttled) view and sees its effect. The two sessions
//! take turns (one browser at a time).
//!
//! Artifacts under `target/`: `dashboard-screenshot.png` (1280×800),
//! `dashboard-screenshot-phone.png` (390×844), `dashboard-picker.png`,
//! `dashboard-reconnecting.png`, and `dashboard-failure.png` on failure.

mod common;
#[path = "dashboard/proxy.rs"]
mod dashboard_proxy;
#[path = "dashboard/support.rs"]
mod dashboard_support;

use std::time::{Duration, Instant};

use dashboard_support::Browser;
use fantoccini::{key::Key, Client, Locator};
use serde_json::{json, Value};

/// Upper bound of every wait on the page; waits poll, they never just sleep.
const WAIT: Duration = Duration::from_secs(10);

/// One browser at a time: the machine running the tests may be small.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_end_to_end_in_chromium() {
    in_browser("dashboard-failure.png", |c| async move { run(&c).await }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_falls_back_to_sse_and_resumes_after_a_cut_in_chromium() {
    in_browser(
        "dashboard-sse-failure.png",
        |c| async move { run_sse(&c).await },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_stays_responsive_with_200_of_2000_symbols_at_50_per_s_in_chromium() {
    in_browser("dashboard-busy-failure.png", |c| async move {
        run_busy(&c).await
    })
    .await;
}

/// Runs `steps` in a fresh browser session, saving `failure_shot` if they
/// fail.
async fn in_browser<F, Fut>(failure_shot: &str, steps: F)
where
    F: FnOnce(Client) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Res> + Send + 'static,
{
    let _turn = ONE_BROWSER.lock().await;
    let Some(browser) = Browser::launch_or_skip().await else {
        return;
    };
    // Run the steps in their own task so that even a panic in them comes
    // back here, and the browser is always shut down (killing chromedriver
    // alone would leave Chromium running).
    let client = browser.client.clone();
    let outcome = tokio::spawn(async move { steps(client).await }).await;
    if !matches!(outcome, Ok(Ok(()))) {
        dashboard_support::save_screenshot(&browser.client, failure_shot).await;
    }
    browser.close().await;
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("{e}"),
        Err(e) => match e.try_into_panic() {
            Ok(payload) => std::panic::resume_unwind(payload),
            Err(e) => panic!("test task: {e}"),
        },
    }
}

type Res<T = ()> = Result<T, String>;

async fn run(c: &Client) -> Res {
    let mut server = common::start(&[]).await;
    let base = format!("http://{}", server.addr);

    // ---- the page loads, connects and streams the symbols in its URL
    c.goto(&format!("{base}/?symbols=AAPL,MSFT,BTC-USD,EURUSD"))
        .await
        .map_err(|e| format!("goto: {e}"))?;
    dashboard_support::set_viewport(c, 1280, 800).await?;
    wait_live(c).await?;
    wait_rows(c, &["AAPL", "MSFT", "BTC-USD", "EURUSD"]).await?;
    wait_all_rows_update(c, "initial stream").await?;
    check_price_formats(c).await?;
    no_js_errors(c).await?;

    // ---- add a symbol with the picker, by mouse ...
    let search = c
        .find(Locator::Id("symbol-search"))
        .await
        .map_err(|e| format!("search box: {e}"))?;
    search.click().await.map_err(|e| e.to_string())?;
    search.send_keys("eth").await.map_err(|e| e.to_string())?;
    wait_for(
        c,
        "picker lists ETH-USD",
        r#"
        const li = document.querySelector('#symbol-results li[data-sym="ETH-USD"]');
        return li && !document.getElementById('symbol-results').hidden ? true : null;"#,
    )
    .await?;
    dashboard_support::save_screenshot(c, "dashboard-picker.png").await;
    c.find(Locator::Css(r#"#symbol-results li[data-sym="ETH-USD"]"#))
        .await
        .map_err(|e| e.to_string())?
        .click()
        .await
        .map_err(|e| format!("click ETH-USD: {e}"))?;
    // ... and by keyboard.
    search.send_keys("sol").await.map_err(|e| e.to_string())?;
    wait_for(
        c,
        "picker lists SOL-USD first",
        r#"
        const li = document.querySelector('#symbol-results li[aria-selected="true"]');
        return li && li.dataset.sym === 'SOL-USD' ? true : null;"#,
    )
    .await?;
    search
        .send_keys(&char::from(Key::Enter).to_string())
        .await
        .map_err(|e| e.to_string())?;
    let selection = ["AAPL", "MSFT", "BTC-USD", "EURUSD", "ETH-USD", "SOL-USD"];
    wait_rows(c, &selection).await?;
    wait_subscribed(c, &selection).await?;
    wait_ticks(c, &["ETH-USD", "SOL-USD"], 3, "added symbols stream").await?;
    wait_all_rows_update(c, "after adding").await?;

    // ---- remove a symbol: its row goes, the server stops sending it
    c.find(Locator::Css(r#"tr[data-sym="MSFT"] button.remove"#))
        .await
        .map_err(|e| e.to_string())?
        .click()
        .await
        .map_err(|e| format!("click remove MSFT: {e}"))?;
    let selection = ["AAPL", "BTC-USD", "EURUSD", "ETH-USD", "SOL-USD"];
    wait_rows(c, &selection).await?;
    wait_subscribed(c, &selection).await?;
    let before = received(c).await?;
    // Every symbol still watched must move on by a few ticks while MSFT
    // (acknowledged unsubscribed above) gets none.
    wait_ticks(c, &selection, 5, "remaining symbols stream").await?;
    let after = received(c).await?;
    let msft = |r: &Value| r.get("MSFT").and_then(Value::as_u64).unwrap_or(0);
    if msft(&after) != msft(&before) {
        return Err(format!(
            "MSFT ticks kept arriving after unsubscribe: {} -> {}",
            msft(&before),
            msft(&after)
        ));
    }
    no_js_errors(c).await?;

    // ---- the selection survives a reload without the URL (localStorage)
    c.goto(&format!("{base}/"))
        .await
        .map_err(|e| e.to_string())?;
    wait_live(c).await?;
    wait_rows(c, &selection).await?;
    wait_all_rows_update(c, "after reload").await?;

    // ---- the whole demo universe at once stays smooth
    click(c, "#add-all").await?;
    let all: Vec<String> =
        serde_json::from_value(exec(c, "return window.__tickwire.universe();").await?)
            .map_err(|e| e.to_string())?;
    if all.len() < 40 {
        return Err(format!(
            "expected the 40-symbol demo universe, got {}",
            all.len()
        ));
    }
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    wait_subscribed(c, &all).await?;
    // Rows far out of view are painted only when they come near it: every
    // row near the view shows a price, and the last row shows one as soon
    // as it is scrolled to.
    wait_for(
        c,
        "every row near the view shows a price",
        &format!(
            "let n = 0;
             for (const tr of document.querySelectorAll('#rows tr')) {{
               if (!({NEAR_VIEW})(tr)) continue;
               n++;
               if (tr.querySelector('.px').textContent === '–') return null;
             }}
             return n;"
        ),
    )
    .await?;
    exec(
        c,
        "document.querySelector('#rows tr:last-child').scrollIntoView(); return null;",
    )
    .await?;
    wait_for(
        c,
        "the last row, scrolled to, shows a price",
        "return document.querySelector('#rows tr:last-child .px').textContent !== '–' || null;",
    )
    .await?;
    exec(c, "window.scrollTo(0, 0); return null;").await?;
    check_smooth(c).await?;
    // The latency and server panels are filled in (from ticks, /api/stats).
    let panels = wait_for(
        c,
        "latency and server panels",
        r#"
        const t = id => document.getElementById(id).textContent;
        const ok = /s$/.test(t('e2e-p50')) && /s$/.test(t('e2e-p99'))
          && Number(t('srv-conns')) >= 1 && t('srv-msgs') !== '–' && /s$/.test(t('srv-p99'));
        return ok ? ['e2e-p50', 'e2e-p99', 'srv-conns', 'srv-msgs', 'srv-p50', 'srv-p99'].map(t) : null;"#,
    )
    .await?;
    eprintln!("dashboard: panels e2e p50, p99, server conns, msgs/s, p50, p99: {panels}");
    // Show a busy instrument in the big chart.
    click(c, r#"tr[data-sym="NVDA"] td.c-sym"#).await?;
    wait_for(
        c,
        "NVDA selected",
        "return document.getElementById('chart-sym').textContent === 'NVDA' || null;",
    )
    .await?;

    // ---- screenshot at laptop size, once the charts have some history
    wait_for_within(
        c,
        Duration::from_secs(20),
        "ten seconds of chart history",
        "return window.__tickwire.history('NVDA') >= 40 || null;",
    )
    .await?;
    exec(c, "window.scrollTo(0, 0);").await?;
    dashboard_support::save_screenshot(c, "dashboard-screenshot.png").await;

    // ---- stop the server: the page says "reconnecting in N s" ...
    let port = server.addr.port();
    server.stop().await;
    let text = wait_for(
        c,
        "reconnecting countdown",
        r#"
        const el = document.getElementById('conn');
        const t = document.getElementById('conn-text').textContent;
        const stale = Array.from(document.querySelectorAll('#rows tr')).every(r => r.classList.contains('stale'));
        return el.dataset.state === 'reconnecting' && /^reconnecting in \d+ s$/.test(t) && stale ? t : null;"#,
    )
    .await?;
    eprintln!("dashboard: server down, page shows {text}");
    dashboard_support::save_screenshot(c, "dashboard-reconnecting.png").await;
    let before = received(c).await?;
    // ... and once a server is back on the same port, live data again.
    server = common::start_on(port, &[]).await;
    wait_live(c).await?;
    wait_for(
        c,
        "second connection",
        "return window.__tickwire.connects() >= 2 || null;",
    )
    .await?;
    wait_subscribed(c, &all).await?;
    wait_for(
        c,
        "ticks after reconnect",
        &format!(
            "const before = {before}; const now = window.__tickwire.received();
             const moved = ['AAPL','NVDA','BTC-USD','EURUSD'].filter(s => (now[s]||0) > (before[s]||0) + 2);
             return moved.length === 4 ? moved : null;"
        ),
    )
    .await?;
    wait_all_rows_update(c, "after reconnect").await?;

    // ---- 25 removals at once (more than the server's burst of control
    // messages): the page paces its control messages, and converges.
    let rows: Vec<String> = serde_json::from_value(
        exec(
            c,
            "const rows = Array.from(document.querySelectorAll('#rows tr'));
             rows.slice(0, 25).forEach(tr => tr.querySelector('button.remove').click());
             return rows.map(tr => tr.dataset.sym);",
        )
        .await?,
    )
    .map_err(|e| e.to_string())?;
    let rest: Vec<&str> = rows[25..].iter().map(String::as_str).collect();
    wait_rows(c, &rest).await?;
    wait_subscribed(c, &rest).await?;
    click(c, "#add-all").await?;
    wait_subscribed(c, &all).await?;
    let resyncs = exec(c, "return window.__tickwire.resyncs();").await?;
    eprintln!("dashboard: 25 removals at once: {resyncs} deferred batch(es)");
    no_js_errors(c).await?;

    // ---- phone width
    dashboard_support::emulate_phone(c, Some((390, 844))).await?;
    wait_for(
        c,
        "phone layout without horizontal scrolling",
        "return innerWidth <= 420 && document.documentElement.scrollWidth <= innerWidth ? [innerWidth, document.documentElement.scrollWidth] : null;",
    )
    .await?;
    wait_all_rows_update(c, "at phone width").await?;
    dashboard_support::save_screenshot(c, "dashboard-screenshot-phone.png").await;
    no_js_errors(c).await?;
    no_server_errors(c).await?;
    dashboard_support::emulate_phone(c, None).await?;
    server.stop().await;

    // ---- once more over HTTPS with token auth: the page's own ?token= goes
    // to /api/symbols and /ws (the browser accepts the test certificate).
    let dir = std::env::temp_dir().join(format!("tickwire-dash-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".into()]).map_err(|e| e.to_string())?;
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).map_err(|e| e.to_string())?;
    std::fs::write(&key, ck.signing_key.serialize_pem()).map_err(|e| e.to_string())?;
    let secret = "dashboard-test-secret-dashboard-test";
    let server = common::start(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--auth-secret",
        secret,
    ])
    .await;
    let claims = json!({"sub": "dashboard", "exp": jsonwebtoken::get_current_timestamp() + 600, "symbols": ["*"]});
    let token = common::jwt(secret, &claims);
    c.goto(&format!(
        "https://localhost:{}/?symbols=AAPL,MSFT&token={token}",
        server.addr.port()
    ))
    .await
    .map_err(|e| format!("goto https: {e}"))?;
    wait_live(c).await?;
    wait_rows(c, &["AAPL", "MSFT"]).await?;
    wait_all_rows_update(c, "over https with a token").await?;
    no_js_errors(c).await?;
    server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The SSE fallback, its resume after a cut, and the calm view.
async fn run_sse(c: &Client) -> Res {
    let server = common::start(&["--synthetic", "3", "--rate", "40"]).await;
    let proxy = dashboard_proxy::Proxy::start(server.addr).await;
    let syms = ["S0", "S1", "S2"];
    c.goto(&format!("http://{}/?symbols=S0,S1,S2", proxy.addr))
        .await
        .map_err(|e| format!("goto: {e}"))?;
    wait_for(
        c,
        "the page live over SSE after the WebSocket was refused",
        "const t = window.__tickwire;
         return t && t.transport() === 'sse' && t.state() === 'live'
           && document.getElementById('conn-text').textContent === 'live (SSE)' || null;",
    )
    .await?;
    let refused = proxy.refused.load(std::sync::atomic::Ordering::Relaxed);
    if refused < 2 {
        return Err(format!(
            "the page gave up on WebSocket after {refused} refusals"
        ));
    }
    wait_ticks(c, &syms, 20, "ticks over SSE").await?;
    // The network drops: every connection through the proxy is cut.
    let opens = exec(c, "return window.__tickwire.sseOpens();").await?;
    let cut = proxy.cut_all();
    if cut == 0 {
        return Err("no connection to cut".into());
    }
    wait_for(
        c,
        "the EventSource to reconnect by itself",
        &format!("return window.__tickwire.sseOpens() > {opens} || null;"),
    )
    .await?;
    wait_ticks(c, &syms, 40, "ticks after the reconnect").await?;
    // Every seq exactly once: one snapshot first, then each tick once, in
    // order, across the cut.
    let seen = exec(c, "return window.__tickwire.seen();").await?;
    for sym in syms {
        let list = seen[sym]
            .as_array()
            .ok_or_else(|| format!("nothing seen of {sym}: {seen}"))?;
        let mut prev: Option<u64> = None;
        for (i, v) in list.iter().enumerate() {
            let seq = match (v.as_u64(), v.as_str()) {
                (Some(seq), _) => seq,
                (None, Some(snap)) if i == 0 => snap[1..].parse().map_err(|e| format!("{e}"))?,
                _ => {
                    return Err(format!(
                        "{sym}: a snapshot after the start at {i}: {list:?}"
                    ))
                }
            };
            if let Some(p) = prev {
                if seq != p + 1 {
                    return Err(format!("{sym}: seq {seq} after {p} (item {i}): {list:?}"));
                }
            }
            prev = Some(seq);
        }
    }
    let t = server.hub.metrics().snapshot_totals();
    if t.resumes_recovered < 3 || t.resumes_lost != 0 {
        return Err(format!("the server did not resume the stream: {t:?}"));
    }
    // The calm view: the stream is reopened throttled (250 ms), and the
    // page says so.
    click(c, "#calm").await?;
    wait_for(
        c,
        "the calm view on",
        "return window.__tickwire.calm()
           && document.getElementById('view-rate').textContent.includes('/s per symbol') || null;",
    )
    .await?;
    server
        .until("the throttled stream to fold ticks", |hub| {
            hub.metrics().snapshot_totals().throttled > 0
        })
        .await;
    no_js_errors(c).await?;
    drop(proxy);
    server.stop().await;
    Ok(())
}

/// Polls `body` (a JS function body) until it returns something other than
/// null/undefined/false, or fails after [`WAIT`] with the page's state.
async fn wait_for(c: &Client, what: &str, body: &str) -> Res<Value> {
    wait_for_within(c, WAIT, what, body).await
}

async fn wait_for_within(c: &Client, limit: Duration, what: &str, body: &str) -> Res<Value> {
    let deadline = Instant::now() + limit;
    let script = format!("return (function() {{ {body} }})() ?? null;");
    let mut last_err = String::new();
    loop {
        match c.execute(&script, vec![]).await {
            Ok(Value::Null) | Ok(Value::Bool(false)) => {}
            Ok(v) => return Ok(v),
            Err(e) => last_err = e.to_string(),
        }
        if Instant::now() >= deadline {
            let state = c
                .execute(
                    "return {conn: document.getElementById('conn-text').textContent,
                     rows: Array.from(document.querySelectorAll('#rows tr')).map(r => r.dataset.sym),
                     errors: window.__tickwireErrors};",
                    vec![],
                )
                .await
                .map(|v| v.to_string())
                .unwrap_or_else(|e| e.to_string());
            return Err(format!(
                "timed out after {limit:?} waiting for: {what} (last error: {last_err}; page: {state})"
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn click(c: &Client, css: &str) -> Res {
    c.find(Locator::Css(css))
        .await
        .map_err(|e| format!("find {css}: {e}"))?
        .click()
        .await
        .map_err(|e| format!("click {css}: {e}"))
}

async fn wait_live(c: &Client) -> Res {
    wait_for(
        c,
        "connection state live",
        "return document.getElementById('conn').dataset.state === 'live'
             && document.getElementById('conn-text').textContent === 'live' || null;",
    )
    .await
    .map(drop)
}

/// The table shows exactly `syms`, in this order.
async fn wait_rows(c: &Client, syms: &[&str]) -> Res {
    let want = json!(syms);
    wait_for(
        c,
        &format!("rows {want}"),
        &format!(
            "const rows = Array.from(document.querySelectorAll('#rows tr')).map(r => r.dataset.sym);
             return JSON.stringify(rows) === JSON.stringify({want}) || null;"
        ),
    )
    .await
    .map(drop)
}

/// The server acknowledged subscriptions for exactly `syms`.
async fn wait_subscribed(c: &Client, syms: &[&str]) -> Res {
    let mut want: Vec<&str> = syms.to_vec();
    want.sort_unstable();
    let want = json!(want);
    wait_for(
        c,
        &format!("server acknowledged subscriptions {want}"),
        &format!(
            "return JSON.stringify(window.__tickwire.subscribed()) === JSON.stringify({want}) || null;"
        ),
    )
    .await
    .map(drop)
}

/// Runs `js` (a function body) in the page; its return value.
async fn exec(c: &Client, js: &str) -> Res<Value> {
    c.execute(js, vec![]).await.map_err(|e| e.to_string())
}

async fn received(c: &Client) -> Res<Value> {
    exec(c, "return window.__tickwire.received();").await
}

/// Each of `syms` gets at least `n` more ticks.
async fn wait_ticks(c: &Client, syms: &[&str], n: u64, what: &str) -> Res {
    let before = received(c).await?;
    wait_for(
        c,
        what,
        &format!(
            "const before = {before}; const now = window.__tickwire.received();
             return {syms}.every(s => (now[s] || 0) >= (before[s] || 0) + {n}) || null;",
            syms = json!(syms)
        ),
    )
    .await
    .map(drop)
}

/// Every row shows a price, and every row's seq cell changes.
/// A JS predicate: the row is well within the band the page paints (one
/// screen above and below the viewport, `rootMargin` in app.js).
const NEAR_VIEW: &str = "(tr) => { const r = tr.getBoundingClientRect(), h = window.innerHeight; \
                         return r.bottom > -h / 2 && r.top < 1.5 * h; }";

async fn wait_all_rows_update(c: &Client, what: &str) -> Res {
    let seqs = wait_for(
        c,
        &format!("{what}: every row near the view has a price"),
        &format!(
            "const m = {{}};
         for (const tr of document.querySelectorAll('#rows tr')) {{
           if (!({NEAR_VIEW})(tr)) continue;
           if (tr.querySelector('.px').textContent === '–') return null;
           m[tr.dataset.sym] = tr.querySelector('.seq').textContent;
         }}
         return Object.keys(m).length ? m : null;"
        ),
    )
    .await?;
    wait_for(
        c,
        &format!("{what}: every row's seq moves"),
        &format!(
            "const before = {seqs};
             for (const tr of document.querySelectorAll('#rows tr'))
               if (({NEAR_VIEW})(tr) && tr.querySelector('.seq').textContent === before[tr.dataset.sym]) return null;
             return true;"
        ),
    )
    .await
    .map(drop)
}

/// Prices carry the instrument's decimals from /api/symbols.
async fn check_price_formats(c: &Client) -> Res {
    let bad = c
        .execute_async(
            "const done = arguments[arguments.length - 1];
             fetch('/api/symbols').then(r => r.json()).then(({symbols}) => {
               const dec = Object.fromEntries(symbols.map(s => [s.sym, s.price_decimals]));
               const bad = [];
               for (const tr of document.querySelectorAll('#rows tr')) {
                 for (const cls of ['px', 'bid', 'ask']) {
                   const t = tr.querySelector('.' + cls).textContent;
                   const d = dec[tr.dataset.sym];
                   const re = new RegExp('^[0-9]{1,3}(,[0-9]{3})*' + (d ? '\\\\.[0-9]{' + d + '}' : '') + '$');
                   if (!re.test(t)) bad.push(tr.dataset.sym + ' ' + cls + ' ' + t + ' (decimals ' + d + ')');
                 }
               }
               done(bad);
             }, e => done(['fetch failed: ' + e]));",
            vec![],
        )
        .await
        .map_err(|e| e.to_string())?;
    if bad.as_array().is_some_and(|a| a.is_empty()) {
        Ok(())
    } else {
        Err(format!("badly formatted prices: {bad}"))
    }
}

/// With the whole universe streaming, frames keep coming and each frame's
/// DOM work stays small (rendering is batched per animation frame). The
/// bounds are loose on purpose (a frozen page fails them, a busy 2-core CI
/// machine does not: there it measures ~25-60 frames/s, 1-3 ms per frame).
async fn check_smooth(c: &Client) -> Res {
    let start = exec(
        c,
        "window.__tickwire.resetPerf(); return window.__tickwire.perf();",
    )
    .await?;
    let t0 = start["now"].as_f64().unwrap_or(0.0);
    let perf = wait_for(
        c,
        "two seconds of frames with all symbols",
        &format!("const p = window.__tickwire.perf(); return p.now - {t0} >= 2000 ? p : null;"),
    )
    .await?;
    let secs = (perf["now"].as_f64().unwrap_or(0.0) - t0) / 1000.0;
    let fps = perf["frames"].as_f64().unwrap_or(0.0) / secs;
    let avg = perf["avgRenderMs"].as_f64().unwrap_or(f64::MAX);
    let max = perf["maxRenderMs"].as_f64().unwrap_or(f64::MAX);
    let lat = exec(c, "return ['e2e-p50', 'e2e-p99', 'rtt', 'client-rate'].map(id => document.getElementById(id).textContent).join(' / ');").await?;
    eprintln!(
        "dashboard: all symbols: {fps:.0} frames/s, render {avg:.2} ms avg, {max:.1} ms max; \
         e2e p50 / p99 / RTT / msgs/s: {}",
        lat.as_str().unwrap_or_default()
    );
    if fps < 10.0 || avg > 10.0 {
        return Err(format!(
            "page not smooth with every symbol: {fps:.0} frames/s, {avg:.2} ms per frame (max {max:.1} ms)"
        ));
    }
    Ok(())
}

/// The server never answered the page with an error (rate_limited,
/// unknown_symbol, ...).
async fn no_server_errors(c: &Client) -> Res {
    let errors = exec(c, "return window.__tickwire.serverErrors();").await?;
    match errors.as_object() {
        Some(o) if o.is_empty() => Ok(()),
        _ => Err(format!(
            "the server answered the page with errors: {errors}"
        )),
    }
}

async fn no_js_errors(c: &Client) -> Res {
    let errors = exec(c, "return window.__tickwireErrors;").await?;
    match errors.as_array() {
        Some(a) if a.is_empty() => Ok(()),
        _ => Err(format!("JavaScript errors on the page: {errors}")),
    }
}

/// The longest stretch the page's main thread may stay busy (a long task,
/// in the Long Tasks API's terms) while it streams.
const LONG_TASK_MAX_MS: f64 = 100.0;

/// 5 s windows of the calm page measured before it is called sluggish.
const CALM_WINDOWS: usize = 3;

/// 200 symbols of `--synthetic 2000 --rate 50` watched: 10,000 messages/s
/// would reach the page. Untouched, the page goes calm by itself within a
/// few seconds (the watchlist at 4/s per symbol, the chart every tick) and
/// says so; then, over 5 s (one of [`CALM_WINDOWS`] tries), no task keeps
/// its main thread busy for more than [`LONG_TASK_MAX_MS`], and frames and
/// ticks keep coming. A user who unticks calm gets every tick, and the page
/// stays live and keeps that choice (its long tasks are printed: 68-104 ms
/// here, not bounded, as that view's load is the user's choice).
async fn run_busy(c: &Client) -> Res {
    // A short history: 2,000 symbols' rings would otherwise fill with
    // ticks no one here resumes.
    let server = common::start(&["--synthetic", "2000", "--rate", "50", "--history", "64"]).await;
    let syms: Vec<String> = (0..200).map(|i| format!("S{i}")).collect();
    let syms: Vec<&str> = syms.iter().map(String::as_str).collect();
    c.goto(&format!(
        "http://{}/?symbols={}",
        server.addr,
        syms.join(",")
    ))
    .await
    .map_err(|e| format!("goto: {e}"))?;
    wait_live(c).await?;
    wait_subscribed(c, &syms).await?;
    wait_for(
        c,
        "the page to go calm by itself",
        "return window.__tickwire.calm()
           && document.getElementById('toast').textContent.includes('calm view on') || null;",
    )
    .await?;
    // A long task is wall time: on a shared machine a busy neighbour can
    // stretch one past the bound (112 ms was seen here with two busy loops
    // beside the test). So a window that misses is measured again, up to
    // [`CALM_WINDOWS`] times; a page that is really sluggish (146 ms before
    // the rows out of view stopped being painted) misses every one.
    let mut missed = Vec::new();
    loop {
        let calm = stream_for_5s(c, &syms, "calm (automatic)").await?;
        if calm.longest_task_ms <= LONG_TASK_MAX_MS && calm.fps >= 10.0 && calm.msgs_per_s >= 400.0
        {
            break;
        }
        missed.push(calm);
        if missed.len() == CALM_WINDOWS {
            return Err(format!("the calm page is not responsive: {missed:?}"));
        }
    }
    // The user's choice: every tick. The page stays with it and stays live.
    click(c, "#calm").await?;
    let every = stream_for_5s(c, &syms, "every tick (chosen)").await?;
    if every.fps < 1.0 || every.msgs_per_s < 4000.0 {
        return Err(format!("the page fell behind with every tick: {every:?}"));
    }
    let still_every_tick = exec(c, "return !window.__tickwire.calm();").await?;
    if still_every_tick != json!(true) {
        return Err("the page went calm again against the user's choice".into());
    }
    no_js_errors(c).await?;
    server.stop().await;
    Ok(())
}

#[derive(Debug)]
struct Streamed {
    msgs_per_s: f64,
    fps: f64,
    longest_task_ms: f64,
}

/// Waits for the view to settle (live, every symbol acknowledged, ticks
/// flowing), then measures 5 s of the page's own clock.
async fn stream_for_5s(c: &Client, syms: &[&str], view: &str) -> Res<Streamed> {
    wait_live(c).await?;
    wait_subscribed(c, syms).await?;
    wait_ticks(c, &syms[..20], 2, &format!("ticks, {view}")).await?;
    let before = received(c).await?;
    let t0 = exec(
        c,
        "window.__tickwire.resetPerf(); return window.__tickwire.perf().now;",
    )
    .await?
    .as_f64()
    .unwrap_or(0.0);
    let perf = wait_for(
        c,
        &format!("five seconds of streaming, {view}"),
        &format!("const p = window.__tickwire.perf(); return p.now - {t0} >= 5000 ? p : null;"),
    )
    .await?;
    let after = received(c).await?;
    let msgs: f64 = syms
        .iter()
        .map(|s| after[*s].as_f64().unwrap_or(0.0) - before[*s].as_f64().unwrap_or(0.0))
        .sum();
    let secs = (perf["now"].as_f64().unwrap_or(0.0) - t0) / 1000.0;
    let streamed = Streamed {
        msgs_per_s: msgs / secs,
        fps: perf["frames"].as_f64().unwrap_or(0.0) / secs,
        longest_task_ms: perf["maxLongTaskMs"].as_f64().unwrap_or(f64::MAX),
    };
    eprintln!(
        "dashboard: 200 of 2,000 symbols at 50/s, {view}: {:.0} msgs/s received, {:.0} frames/s, \
         render {:.2} ms avg, {} long tasks, longest {:.0} ms",
        streamed.msgs_per_s,
        streamed.fps,
        perf["avgRenderMs"].as_f64().unwrap_or(0.0),
        perf["longTasks"].as_u64().unwrap_or(0),
        streamed.longest_task_ms,
    );
    Ok(streamed)
}
