//! Token auth against a real server: HS256 JWTs minted here with the same
//! crate a deployment would mint them with (jsonwebtoken), presented as a
//! header or `?token=`; refusals before the upgrade, entitlements per
//! symbol, the `auth` op, and expiry mid-session (close 4001).

mod common;

use common::*;
use serde_json::{json, Value};
use tickwire::server::admission::RejectReason;
use tickwire_protocol::Close;

const SECRET: &str = "test-secret-test-secret-test-secret!";

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn mint(claims: Value) -> String {
    jwt(SECRET, &claims)
}

fn token(sub: &str, symbols: &[&str], ttl_s: u64) -> String {
    mint(json!({"sub": sub, "exp": now() + ttl_s, "symbols": symbols}))
}

async fn server() -> TestServer {
    start(&["--synthetic", "6", "--rate", "50", "--auth-secret", SECRET]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_good_token_data_endpoints_answer_401_before_any_upgrade() {
    let server = server().await;
    let addr = server.addr;
    let expired = mint(json!({"sub":"a","exp": now() - 5,"symbols":["*"]}));
    let forged = jwt(
        "not the server's secret, not at all",
        &json!({"sub":"a","exp": now() + 60,"symbols":["*"]}),
    );
    let mut refusals = 0;
    for (path, upgrade) in [
        ("/ws", true),
        ("/api/snapshot", false),
        ("/api/history?symbol=S0", false),
        ("/api/symbols", false),
    ] {
        for auth in [
            None,
            Some("Bearer nonsense".to_string()),
            Some(format!("Bearer {expired}")),
            Some(format!("Bearer {forged}")),
        ] {
            let headers: Vec<(&str, &str)> = auth
                .as_deref()
                .map(|a| vec![("Authorization", a)])
                .unwrap_or_default();
            let r = request(addr, path, upgrade, &headers).await;
            assert_eq!(r.status, 401, "{path} with {auth:?}: {r:?}");
            assert_eq!(r.json()["reason"], "auth");
            assert_eq!(r.header("www-authenticate"), Some("bearer"));
            assert!(
                !r.body.contains("nonsense"),
                "the token is echoed: {}",
                r.body
            );
            refusals += 1;
        }
    }
    let r = request(addr, &format!("/api/symbols?token={expired}"), false, &[]).await;
    assert_eq!(r.status, 401);
    assert!(r.json()["error"].as_str().unwrap().contains("expired"));
    assert_eq!(
        server.hub.metrics().rejected(RejectReason::Auth),
        refusals + 1
    );
    // Health, metrics and the dashboard stay open.
    for path in ["/healthz", "/metrics", "/"] {
        assert_eq!(request(addr, path, false, &[]).await.status, 200, "{path}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entitlements_decide_what_streams() {
    let server = server().await;
    let addr = server.addr;
    let t = token("ann", &["S1", "S2*"], 60);

    // Header or query; URL symbols outside the grant are refused, listed.
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = format!("Bearer {t}");
    let mut c = Client::connect_over(
        stream,
        "x",
        "/ws?symbols=S0,S1,S2",
        &[("Authorization", &auth)],
    )
    .await;
    assert_eq!(
        c.json_of("subscribed").await["symbols"],
        json!(["S1", "S2"])
    );
    let e = c.json_of("error").await;
    assert_eq!(e["code"], "forbidden");
    assert_eq!(e["symbols"], json!(["S0"]));
    // `*` is everything the token allows; nothing else ever arrives.
    let mut q = server.client(&format!("/ws?token={t}")).await;
    q.send(r#"{"op":"subscribe","symbols":["*"],"id":1}"#).await;
    assert_eq!(
        q.json_of("subscribed").await["symbols"],
        json!(["S1", "S2"])
    );
    q.send(r#"{"op":"subscribe","symbols":["S3","S1"],"id":2}"#)
        .await;
    let e = q.json_of("error").await;
    assert_eq!(
        (e["code"].as_str(), e["id"].as_i64()),
        (Some("forbidden"), Some(2))
    );
    assert_eq!(e["symbols"], json!(["S3"]));
    for _ in 0..100 {
        let m = q.json().await;
        if m["type"] == "tick" {
            assert!(m["sym"] == "S1" || m["sym"] == "S2", "{m}");
        }
    }

    // Snapshots and history follow the same grant.
    let r = request(
        addr,
        &format!("/api/snapshot?symbols=S1,S0&token={t}"),
        false,
        &[],
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["symbols"], json!(["S0"]));
    server
        .until("S1 and S2 to have traded", |hub| {
            hub.latest(1).is_some() && hub.latest(2).is_some()
        })
        .await;
    let r = request(addr, &format!("/api/snapshot?token={t}"), false, &[]).await;
    let syms: Vec<String> = r.json()["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["sym"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(syms, ["S1", "S2"]);
    let r = request(
        addr,
        &format!("/api/history?symbol=S4&token={t}"),
        false,
        &[],
    )
    .await;
    assert_eq!(r.status, 403);

    // `max_symbols` lowers the limit for this token.
    let small = mint(json!({"sub":"bo","exp": now()+60,"symbols":["*"],"max_symbols":2}));
    let mut s = server.client(&format!("/ws?token={small}")).await;
    assert_eq!(s.welcome["max_symbols"], 2);
    s.send(r#"{"op":"subscribe","symbols":["S0","S1","S2"]}"#)
        .await;
    assert_eq!(s.json_of("error").await["code"], "too_many_symbols");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_ends_with_4001_at_exp_unless_the_token_is_renewed() {
    let server = server().await;
    // Expires within about a second.
    let short = token("cy", &["*"], 1);
    let mut c = server
        .client(&format!("/ws?symbols=S0&token={short}"))
        .await;
    c.json_of("subscribed").await;
    let e = c.json_of("error").await;
    assert_eq!(e["code"], "token_expired");
    let (code, reason) = c.closed().await;
    assert_eq!((code, reason.as_str()), (4001, "token expired"));
    assert_eq!(Close::from_frame(code, &reason), Some(Close::TokenExpired));

    // Renewed before exp (same sub): it streams past the old exp.
    let short = token("cy", &["*"], 1);
    let mut c = server
        .client(&format!("/ws?symbols=S0&token={short}"))
        .await;
    c.send(&format!(
        r#"{{"op":"auth","id":5,"token":"{}"}}"#,
        token("cy", &["S0"], 60)
    ))
    .await;
    let a = c.json_of("authenticated").await;
    assert_eq!((a["id"].as_i64(), a["sub"].as_str()), (Some(5), Some("cy")));
    // Another sub, or a bad token, is refused; the session goes on.
    c.send(&format!(
        r#"{{"op":"auth","id":6,"token":"{}"}}"#,
        token("mallory", &["*"], 60)
    ))
    .await;
    assert_eq!(c.json_of("error").await["code"], "unauthorized");
    c.send(r#"{"op":"auth","id":7,"token":"x.y.z"}"#).await;
    assert_eq!(c.json_of("error").await["code"], "unauthorized");
    // Past the first token's exp (ticks of S0 arrive at 50/s: 150 is ~3 s).
    let mut ticks = 0;
    while ticks < 150 {
        match c.next().await {
            Msg::Json(v) if v["type"] == "tick" => ticks += 1,
            Msg::Close(code, r) => panic!("closed with {code} {r} after renewal"),
            _ => {}
        }
    }
    // A renewal that narrows the grant drops what it no longer covers.
    c.send(r#"{"op":"subscribe","symbols":["S0"]}"#).await;
    c.send(&format!(
        r#"{{"op":"auth","id":8,"token":"{}"}}"#,
        token("cy", &["S5"], 60)
    ))
    .await;
    c.json_of("authenticated").await;
    let e = c.json_of("error").await;
    assert_eq!(
        (e["code"].as_str(), e["symbols"].clone()),
        (Some("forbidden"), json!(["S0"]))
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secret_can_come_from_a_file_and_bad_ones_fail_at_start() {
    use clap::Parser;
    let dir = std::env::temp_dir().join(format!("tickwire-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("secret");
    std::fs::write(&file, format!("{SECRET}\n")).unwrap();
    let path = file.to_str().unwrap();
    let server = start(&["--auth-secret-file", path]).await;
    let t = token("d", &["*"], 60);
    server.client(&format!("/ws?token={t}")).await;
    server.stop().await;

    let bind = |args: Vec<String>| async move {
        let mut argv = vec![
            "tickwire".to_string(),
            "--listen".into(),
            "127.0.0.1:0".into(),
        ];
        argv.extend(args);
        tickwire::server::Server::bind(tickwire::config::Config::parse_from(argv))
            .await
            .err()
            .map(|e| e.to_string())
    };
    let missing = bind(vec![
        "--auth-secret-file".into(),
        "/nonexistent/secret".into(),
    ])
    .await;
    assert!(missing.unwrap().contains("--auth-secret-file"));
    std::fs::write(&file, "  \n").unwrap();
    let empty = bind(vec!["--auth-secret-file".into(), path.into()]).await;
    assert!(empty.unwrap().contains("empty"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_streams_follow_the_same_tokens_and_entitlements() {
    let server = server().await;
    let addr = server.addr;
    let r = request(addr, "/sse?symbols=S1", false, &[]).await;
    assert_eq!(r.status, 401);
    let t = token("eve", &["S1"], 60);
    let r = request(addr, &format!("/sse?symbols=S0,S1&token={t}"), false, &[]).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["symbols"], json!(["S0"]));
    let r = request(addr, &format!("/sse?symbols=*&token={t}"), false, &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    server.stop().await;
}
