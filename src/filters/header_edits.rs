//! `request_headers` / `response_headers: { remove, rename, set, add }`: headers changed on
//! the way to the upstream or back to the client, in that order. Values are `{…}`
//! templates rendered against the client's request; a value that renders into something
//! a header cannot carry is left out (logged at debug), never a failed request.

use crate::config::model::HeaderEdits as Edits;
use crate::request::RequestCtx;
use crate::template::{Escape, Template, Vars};
use http::{HeaderName, HeaderValue};
use pingora::http::{RequestHeader, ResponseHeader};

pub struct HeaderEdits(Edits);

impl HeaderEdits {
    pub fn new(edits: &Edits) -> Self {
        HeaderEdits(edits.clone())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn fields_added(&self) -> usize {
        self.0.fields_added()
    }

    pub fn apply_request(
        &self,
        req: &mut RequestHeader,
        original: &RequestHeader,
        ctx: &RequestCtx,
    ) -> pingora::Result<()> {
        let edits = &self.0;
        for name in &edits.remove {
            req.remove_header(name);
        }
        for (from, to) in &edits.rename {
            let values: Vec<HeaderValue> = req.headers.get_all(from).iter().cloned().collect();
            if values.is_empty() {
                continue;
            }
            req.remove_header(from);
            req.remove_header(to);
            for v in values {
                req.append_header(to.clone(), v)?;
            }
        }
        let vars = ctx.vars();
        for (name, template) in &edits.set {
            if let Some(v) = value(template, original, &vars, name) {
                req.insert_header(name.clone(), v)?;
            }
        }
        for (name, template) in &edits.add {
            if let Some(v) = value(template, original, &vars, name) {
                req.append_header(name.clone(), v)?;
            }
        }
        Ok(())
    }

    pub fn apply_response(
        &self,
        resp: &mut ResponseHeader,
        req: &RequestHeader,
        ctx: &RequestCtx,
    ) -> pingora::Result<()> {
        let edits = &self.0;
        for name in &edits.remove {
            resp.remove_header(name);
        }
        let vars = ctx.vars();
        for (name, template) in &edits.set {
            if let Some(v) = value(template, req, &vars, name) {
                resp.insert_header(name.clone(), v)?;
            }
        }
        for (name, template) in &edits.add {
            if let Some(v) = value(template, req, &vars, name) {
                resp.append_header(name.clone(), v)?;
            }
        }
        Ok(())
    }
}

fn value(template: &Template, req: &RequestHeader, vars: &Vars, name: &HeaderName) -> Option<HeaderValue> {
    let rendered = template.render(req, vars, Escape::Header);
    HeaderValue::try_from(rendered)
        .map_err(|_| log::debug!("header {name} left out: its value is not a valid header value"))
        .ok()
}
