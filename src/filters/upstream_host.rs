//! `upstream_host`: the `Host` sent upstream. `preserve` (the default) keeps the client's;
//! `target` sends the chosen target's address as written in the pool (what a service
//! behind a virtual-host router expects); a literal sends that name.

use crate::config::model::UpstreamHost as Policy;
use crate::request::RequestCtx;
use http::header::HOST;
use pingora::http::RequestHeader;

pub struct UpstreamHost(Policy);

impl UpstreamHost {
    /// `None` for `preserve`: nothing to do.
    pub fn new(policy: &Policy) -> Option<Self> {
        (*policy != Policy::Preserve).then(|| UpstreamHost(policy.clone()))
    }

    pub fn apply(&self, req: &mut RequestHeader, ctx: &RequestCtx) -> pingora::Result<()> {
        match &self.0 {
            Policy::Preserve => Ok(()),
            Policy::Literal(host) => req.insert_header(HOST, host.clone()),
            Policy::Target => {
                // Set per attempt: a retry may go to another target.
                let Some(attempt) = &ctx.attempt else {
                    return Ok(());
                };
                req.insert_header(HOST, attempt.target.target().config.spec.as_str())
            }
        }
    }
}
