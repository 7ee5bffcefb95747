//! The browser dashboard (placeholder until the dashboard lands).

/// A static file compiled into the binary.
pub struct Asset {
    pub content_type: &'static str,
    pub body: &'static [u8],
}

/// The embedded file served at `path` (`/` is the page itself), if any.
pub fn asset(_path: &str) -> Option<Asset> {
    None
}
