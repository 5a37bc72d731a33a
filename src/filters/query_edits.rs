//! `request_query: { remove, set, add }`: query parameters changed on the request sent
//! upstream. Values are `{…}` templates, percent-encoded where they do not come from the
//! URL itself. Parameters are compared by their raw (undecoded) names.

use crate::config::model::QueryEdits as Edits;
use crate::request::RequestCtx;
use crate::template::Escape;
use pingora::http::RequestHeader;
use pingora::{Error, ErrorType};

pub struct QueryEdits(Edits);

impl QueryEdits {
    pub fn new(edits: &Edits) -> Self {
        QueryEdits(edits.clone())
    }

    /// The new query string (without `?`) for a request whose client query is `query`.
    fn edit(&self, query: Option<&str>, original: &RequestHeader, ctx: &RequestCtx) -> String {
        let edits = &self.0;
        let vars = ctx.vars();
        let mut out = String::new();
        let append = |out: &mut String, pair: &str| {
            if !out.is_empty() {
                out.push('&');
            }
            out.push_str(pair);
        };
        let replaced = |name: &str| {
            edits
                .remove
                .iter()
                .chain(edits.set.iter().map(|(n, _)| n))
                .any(|n| n == name)
        };
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let name = pair.split_once('=').map_or(pair, |(k, _)| k);
            if !replaced(name) {
                append(&mut out, pair);
            }
        }
        for (name, value) in edits.set.iter().chain(&edits.add) {
            append(&mut out, name);
            out.push('=');
            value.render_into(original, &vars, Escape::Url, &mut out);
        }
        out
    }

    pub fn apply(&self, req: &mut RequestHeader, original: &RequestHeader, ctx: &RequestCtx) -> pingora::Result<()> {
        let query = self.edit(req.uri.query(), original, ctx);
        let mut uri = req.uri.path().to_string();
        if !query.is_empty() {
            uri.push('?');
            uri.push_str(&query);
        }
        let uri = uri
            .parse::<http::Uri>()
            .map_err(|e| Error::because(ErrorType::InternalError, "request_query produced an invalid URI", e))?;
        req.set_uri(uri);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::PathPattern;
    use crate::template::Template;
    use std::sync::Arc;

    #[test]
    fn parameters_are_removed_set_and_added() {
        let pattern = PathPattern::parse_prefix("/").unwrap();
        let t = |s: &str| Template::compile(s, &pattern).unwrap();
        let edits = Edits {
            remove: vec!["debug".into()],
            set: vec![("page".into(), t("1"))],
            add: vec![("tag".into(), t("{header.x-tag}")), ("from".into(), t("{query.page}"))],
        };
        let mut req = RequestHeader::build("GET", b"/a?debug=1&page=9&keep=yes&page=8", None).unwrap();
        req.insert_header("x-tag", "a b").unwrap();
        let ctx = RequestCtx::new(Arc::new(crate::snapshot::Snapshot::empty_for_tests()));
        let original = req.clone();
        QueryEdits::new(&edits).apply(&mut req, &original, &ctx).unwrap();
        assert_eq!(req.uri.to_string(), "/a?keep=yes&page=1&tag=a%20b&from=9");
    }
}
