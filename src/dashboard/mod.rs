//! The browser dashboard: one HTML page, a stylesheet, a script and an icon,
//! compiled into the binary so `GET /` works offline (no CDN, no build step).
//!
//! The page opens `GET /ws?policy=conflate`, reads `/api/symbols` and polls
//! `/api/stats`; see `assets/app.js`.

/// A static file compiled into the binary.
pub struct Asset {
    pub content_type: &'static str,
    pub body: &'static [u8],
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const SVG: &str = "image/svg+xml";

/// Every embedded file: request path, content type, bytes.
const ASSETS: &[(&str, &str, &[u8])] = &[
    ("/", HTML, include_bytes!("assets/index.html")),
    ("/assets/app.js", JS, include_bytes!("assets/app.js")),
    ("/assets/style.css", CSS, include_bytes!("assets/style.css")),
    (
        "/assets/favicon.svg",
        SVG,
        include_bytes!("assets/favicon.svg"),
    ),
];

/// The embedded file served at `path` (`/` is the page itself), if any.
///
/// `path` is the request path without the query string; `/index.html` is an
/// alias of `/`, and `/favicon.ico` of the SVG icon.
pub fn asset(path: &str) -> Option<Asset> {
    let path = match path {
        "/index.html" => "/",
        "/favicon.ico" => "/assets/favicon.svg",
        p => p,
    };
    ASSETS
        .iter()
        .find(|(p, _, _)| *p == path)
        .map(|&(_, content_type, body)| Asset { content_type, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_the_page_and_its_assets() {
        let page = asset("/").expect("page");
        assert!(page.content_type.starts_with("text/html"));
        let html = std::str::from_utf8(page.body).unwrap();
        // Everything the page references is embedded: nothing from a CDN.
        for (path, _, _) in ASSETS.iter().skip(1) {
            assert!(html.contains(path), "page does not reference {path}");
        }
        // Nothing is fetched from elsewhere (the SVG's xmlns is a name, not
        // a download, so only the page, script and stylesheet are checked).
        for path in ["/", "/assets/app.js", "/assets/style.css"] {
            let text = std::str::from_utf8(asset(path).unwrap().body).unwrap();
            assert!(
                !text.contains("http://") && !text.contains("https://") && !text.contains("//cdn"),
                "{path} refers to another origin"
            );
        }
        assert_eq!(asset("/assets/app.js").unwrap().content_type, JS);
        assert_eq!(asset("/assets/style.css").unwrap().content_type, CSS);
        assert!(asset("/index.html").is_some());
        assert!(asset("/assets/nope.js").is_none());
        assert!(asset("/assets/../Cargo.toml").is_none());
    }
}
