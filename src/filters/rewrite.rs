//! `rewrite: { regex, to }`: the path sent upstream, rewritten by a regex with captures
//! (`^/v1/(.*)$` → `/api/$1`). The query string is kept; a path the regex does not match
//! goes as it is.

use crate::config::model::PathRewrite;
use pingora::http::RequestHeader;
use pingora::{Error, ErrorType};

pub struct Rewrite(PathRewrite);

impl Rewrite {
    pub fn new(rule: &PathRewrite) -> Self {
        Rewrite(rule.clone())
    }

    /// The rewritten path, `None` when the regex does not match.
    pub fn rewrite(&self, path: &str) -> Option<String> {
        let caps = self.0.regex.captures(path)?;
        let whole = caps.get(0)?;
        let mut out = String::with_capacity(path.len() + self.0.to.len());
        out.push_str(&path[..whole.start()]);
        caps.expand(&self.0.to, &mut out);
        out.push_str(&path[whole.end()..]);
        Some(out)
    }

    pub fn apply(&self, req: &mut RequestHeader) -> pingora::Result<()> {
        let Some(mut uri) = self.rewrite(req.uri.path()) else {
            return Ok(());
        };
        if let Some(q) = req.uri.query() {
            uri.push('?');
            uri.push_str(q);
        }
        let uri = uri
            .parse::<http::Uri>()
            .map_err(|e| Error::because(ErrorType::InternalError, "rewrite produced an invalid URI", e))?;
        req.set_uri(uri);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(regex: &str, to: &str, uri: &str) -> String {
        let rule = PathRewrite {
            regex: regex::Regex::new(regex).unwrap(),
            to: to.into(),
        };
        let mut req = RequestHeader::build("GET", uri.as_bytes(), None).unwrap();
        Rewrite::new(&rule).apply(&mut req).unwrap();
        req.uri.to_string()
    }

    #[test]
    fn captures_fill_the_replacement_and_the_query_stays() {
        assert_eq!(
            rewritten("^/v1/(.*)$", "/api/$1", "/v1/users/7?x=1"),
            "/api/users/7?x=1"
        );
        assert_eq!(
            rewritten("^/u/(?P<id>[0-9]+)$", "/users/${id}/profile", "/u/42"),
            "/users/42/profile"
        );
        assert_eq!(
            rewritten("^/v1/(.*)$", "/api/$1", "/v2/x"),
            "/v2/x",
            "no match: unchanged"
        );
    }
}
