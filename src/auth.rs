//! Token auth and symbol entitlements.
//!
//! With `--auth-secret` (or `--auth-secret-file`) every stream and data
//! endpoint wants a JWT signed HS256 with that secret, verified by the
//! jsonwebtoken crate (never by hand). A token carries who (`sub`), until
//! when (`exp`, required; no leeway: an expired token is refused at once),
//! what (`symbols`: exact names, `PREFIX*` patterns, `*` for all; no claim
//! means nothing) and optionally a lower `max_symbols`. A verified token is a
//! [`Grant`]; sessions keep theirs and swap it when the client sends a fresh
//! token (`{"op":"auth"}`).
//!
//! Tokens are secrets: nothing here logs one, and no error message repeats it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hyper::header::AUTHORIZATION;
use hyper::Request;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::config::Config;

/// Why auth could not be set up at start; each message says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error("cannot read the auth secret file {path}: {source}; check --auth-secret-file")]
    ReadSecret {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the auth secret is empty; give a long random secret with --auth-secret-file")]
    EmptySecret,
    #[error("the auth secret is not usable as an HS256 key: {0}")]
    Key(String),
}

/// Why a token was refused (the `error` of the HTTP 401, or of the `auth`
/// op's error reply). Never contains the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    Missing,
    Expired,
    /// Malformed, badly signed, wrong algorithm, or missing claims.
    Invalid,
}

impl TokenError {
    pub fn message(self) -> &'static str {
        match self {
            TokenError::Missing => {
                "a token is required: send `Authorization: Bearer <jwt>` or add ?token=<jwt>"
            }
            TokenError::Expired => "the token has expired; get a fresh one",
            TokenError::Invalid => {
                "the token is not valid (malformed, badly signed, or missing sub/exp)"
            }
        }
    }
}

/// One entry of the `symbols` claim.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    All,
    Exact(String),
    Prefix(String),
}

impl Pattern {
    fn parse(s: &str) -> Pattern {
        match s.strip_suffix('*') {
            Some("") => Pattern::All,
            Some(prefix) => Pattern::Prefix(prefix.to_string()),
            None => Pattern::Exact(s.to_string()),
        }
    }

    fn matches(&self, sym: &str) -> bool {
        match self {
            Pattern::All => true,
            Pattern::Exact(s) => s == sym,
            Pattern::Prefix(p) => sym.starts_with(p.as_str()),
        }
    }
}

/// The claims tickwire reads; others are ignored.
#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    #[serde(default)]
    symbols: Vec<String>,
    #[serde(default)]
    max_symbols: Option<usize>,
}

/// What a verified token lets its holder do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Who: logged with the connection.
    pub sub: String,
    /// Until when, in seconds since the Unix epoch.
    pub exp: u64,
    /// Lowers the server's `--max-symbols` for this holder.
    pub max_symbols: Option<usize>,
    patterns: Vec<Pattern>,
}

impl Grant {
    /// Whether the token entitles its holder to `sym`.
    pub fn allows(&self, sym: &str) -> bool {
        self.patterns.iter().any(|p| p.matches(sym))
    }

    /// The symbols limit for this holder: the server's, or the token's if lower.
    pub fn max_symbols_within(&self, server_max: usize) -> usize {
        self.max_symbols.map_or(server_max, |m| m.min(server_max))
    }

    /// How long until `exp` (zero once it has passed); `None` for a grant
    /// that never expires (auth off).
    pub fn expires_in(&self) -> Option<Duration> {
        if self.exp == u64::MAX {
            return None;
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Some(Duration::from_secs(self.exp).saturating_sub(now))
    }

    /// A grant of everything that never expires: the holder when auth is off.
    pub fn everything() -> Grant {
        Grant {
            sub: String::new(),
            exp: u64::MAX,
            max_symbols: None,
            patterns: vec![Pattern::All],
        }
    }
}

/// The verifier, built once at start.
pub struct Auth {
    key: DecodingKey,
    validation: Validation,
}

impl Auth {
    /// The verifier `config` asks for; `None` when auth is off.
    pub fn from_config(config: &Config) -> Result<Option<Arc<Auth>>, AuthSetupError> {
        let secret = match (&config.auth_secret, &config.auth_secret_file) {
            (Some(s), _) => s.clone().into_bytes(),
            (None, Some(path)) => std::fs::read(path)
                .map_err(|source| AuthSetupError::ReadSecret {
                    path: path.clone(),
                    source,
                })?
                .trim_ascii()
                .to_vec(),
            (None, None) => return Ok(None),
        };
        if secret.is_empty() {
            return Err(AuthSetupError::EmptySecret);
        }
        if secret.len() < 32 {
            tracing::warn!(
                "the auth secret is {} bytes; HS256 secrets should be at least 32 random bytes",
                secret.len()
            );
        }
        Ok(Some(Arc::new(Auth::new(&secret)?)))
    }

    pub fn new(secret: &[u8]) -> Result<Auth, AuthSetupError> {
        let key =
            DecodingKey::from_secret(secret).map_err(|e| AuthSetupError::Key(e.to_string()))?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Ok(Auth { key, validation })
    }

    /// Verifies `token`: signature, algorithm, `exp` in the future, claims.
    pub fn verify(&self, token: &str) -> Result<Grant, TokenError> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })?
            .claims;
        // RFC 7519: valid only *before* `exp`. jsonwebtoken still accepts
        // a token during its `exp` second, while a session's watch ends it
        // at the start of that second; one rule for both.
        if claims.exp <= jsonwebtoken::get_current_timestamp() {
            return Err(TokenError::Expired);
        }
        Ok(Grant {
            sub: claims.sub,
            exp: claims.exp,
            max_symbols: claims.max_symbols,
            patterns: claims.symbols.iter().map(|s| Pattern::parse(s)).collect(),
        })
    }

    /// Verifies the token `req` carries: `Authorization: Bearer` first, else
    /// the `token` query parameter (browsers cannot set WebSocket headers).
    pub fn verify_request<B>(&self, req: &Request<B>) -> Result<Grant, TokenError> {
        let token = token_of(req).ok_or(TokenError::Missing)?;
        self.verify(&token)
    }
}

/// The token in `Authorization: Bearer <jwt>` or `?token=<jwt>`.
pub fn token_of<B>(req: &Request<B>) -> Option<String> {
    if let Some(v) = req.headers().get(AUTHORIZATION) {
        let v = v.to_str().ok()?;
        let (scheme, token) = v.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_string());
    }
    crate::api::query_param(req.uri().query(), "token")
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn token(claims: serde_json::Value, secret: &[u8]) -> String {
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(secret).unwrap(),
        )
        .unwrap()
    }

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    #[test]
    fn a_good_token_grants_its_symbols() {
        let auth = Auth::new(SECRET).unwrap();
        let t = token(
            serde_json::json!({"sub":"ann","exp":now()+60,"symbols":["AAPL","BTC-*"],"max_symbols":5}),
            SECRET,
        );
        let g = auth.verify(&t).unwrap();
        assert_eq!((g.sub.as_str(), g.max_symbols), ("ann", Some(5)));
        assert!(g.allows("AAPL") && g.allows("BTC-USD") && !g.allows("MSFT") && !g.allows("AAP"));
        let all = auth
            .verify(&token(
                serde_json::json!({"sub":"b","exp":now()+60,"symbols":["*"]}),
                SECRET,
            ))
            .unwrap();
        assert!(all.allows("anything"));
        let none = auth
            .verify(&token(
                serde_json::json!({"sub":"c","exp":now()+60}),
                SECRET,
            ))
            .unwrap();
        assert!(!none.allows("AAPL"));
    }

    #[test]
    fn bad_tokens_are_refused_with_a_reason() {
        let auth = Auth::new(SECRET).unwrap();
        let expired = token(
            serde_json::json!({"sub":"a","exp":now()-1,"symbols":["*"]}),
            SECRET,
        );
        assert_eq!(auth.verify(&expired), Err(TokenError::Expired));
        // Valid only before `exp` (RFC 7519), not during its second.
        let at_exp = token(
            serde_json::json!({"sub":"a","exp":now(),"symbols":["*"]}),
            SECRET,
        );
        assert_eq!(auth.verify(&at_exp), Err(TokenError::Expired));
        let forged = token(
            serde_json::json!({"sub":"a","exp":now()+60,"symbols":["*"]}),
            b"another secret, another secret!!",
        );
        assert_eq!(auth.verify(&forged), Err(TokenError::Invalid));
        let no_exp = token(serde_json::json!({"sub":"a","symbols":["*"]}), SECRET);
        assert_eq!(auth.verify(&no_exp), Err(TokenError::Invalid));
        let no_sub = token(serde_json::json!({"exp":now()+60,"symbols":["*"]}), SECRET);
        assert_eq!(auth.verify(&no_sub), Err(TokenError::Invalid));
        assert_eq!(auth.verify("not.a.jwt"), Err(TokenError::Invalid));
        // alg "none" must never pass.
        let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhIiwiZXhwIjo5OTk5OTk5OTk5fQ.";
        assert_eq!(auth.verify(none), Err(TokenError::Invalid));
    }
}
