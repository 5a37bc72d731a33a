//! `strip_prefix`: removes a leading part of the path before the request goes upstream
//! (`/api/users/42?x=1` with `/api/users` → `/42?x=1`; the bare prefix becomes `/`).

use pingora::http::RequestHeader;
use pingora::{Error, ErrorType};

pub struct StripPrefix {
    prefix: String,
}

impl StripPrefix {
    pub fn new(prefix: &str) -> Self {
        StripPrefix {
            prefix: prefix.to_string(),
        }
    }

    /// The path with the prefix removed, or `None` when it does not apply. A prefix not
    /// ending in `/` strips whole segments only: `/api` strips `/api/x` but not `/apix`.
    pub fn strip<'a>(&self, path: &'a str) -> Option<&'a str> {
        let rest = path.strip_prefix(self.prefix.as_str())?;
        if rest.is_empty() || rest.starts_with('/') || self.prefix.ends_with('/') {
            Some(rest)
        } else {
            None
        }
    }

    pub fn apply(&self, req: &mut RequestHeader) -> pingora::Result<()> {
        let Some(rest) = self.strip(req.uri.path()) else {
            return Ok(());
        };
        let slash = if rest.starts_with('/') { "" } else { "/" };
        let uri = match req.uri.query() {
            Some(q) => format!("{slash}{rest}?{q}"),
            None => format!("{slash}{rest}"),
        };
        let uri = uri
            .parse::<http::Uri>()
            .map_err(|e| Error::because(ErrorType::InternalError, "strip_prefix produced an invalid URI", e))?;
        req.set_uri(uri);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stripped(prefix: &str, uri: &str) -> String {
        let mut req = RequestHeader::build("GET", uri.as_bytes(), None).unwrap();
        StripPrefix::new(prefix).apply(&mut req).unwrap();
        req.uri.to_string()
    }

    #[test]
    fn strips_whole_segments_and_keeps_the_query() {
        assert_eq!(stripped("/api/users", "/api/users/42?x=1"), "/42?x=1");
        assert_eq!(stripped("/api/users", "/api/users"), "/");
        assert_eq!(stripped("/api/users", "/api/users?x=1"), "/?x=1");
        assert_eq!(stripped("/api/users", "/api/usersx"), "/api/usersx");
        assert_eq!(stripped("/api/", "/api/x"), "/x");
        assert_eq!(stripped("/api", "/other"), "/other");
    }
}
