//! CORS: preflights are answered by the gateway (204 with the allow headers, or 403 for an
//! origin or method the policy refuses); actual responses to allowed origins get
//! Access-Control-Allow-Origin (+ credentials, expose headers). A disallowed origin never
//! gets a CORS header. `Vary: Origin` whenever the answer depends on the origin.

use crate::config::model::CorsConfig;
use crate::request::GatewayError;
use http::header::{self, HeaderValue};
use http::Method;
use pingora::http::{RequestHeader, ResponseHeader};

pub struct CorsPolicy {
    /// Lowercase; `None` = any origin.
    origins: Option<Vec<String>>,
    methods: Vec<Method>,
    allow_methods: HeaderValue,
    /// `None` = mirror Access-Control-Request-Headers.
    allow_headers: Option<HeaderValue>,
    expose_headers: Option<HeaderValue>,
    credentials: bool,
    max_age: Option<HeaderValue>,
}

/// A preflight: OPTIONS with Origin and Access-Control-Request-Method.
pub fn preflight_method(req: &RequestHeader) -> Option<Method> {
    if req.method != Method::OPTIONS || !req.headers.contains_key(header::ORIGIN) {
        return None;
    }
    let asked = req.headers.get(header::ACCESS_CONTROL_REQUEST_METHOD)?;
    Method::from_bytes(asked.as_bytes()).ok()
}

impl CorsPolicy {
    /// The policy in words, and what it says of `req`'s origin (explain).
    pub fn describe(&self, req: &RequestHeader) -> String {
        let origins = self.origins.as_ref().map_or("any origin".to_string(), |o| o.join(", "));
        let methods: Vec<&str> = self.methods.iter().map(Method::as_str).collect();
        let verdict = match req.headers.get(header::ORIGIN) {
            None => "no Origin: not a cross-origin request".to_string(),
            Some(o) if self.allowed_origin(req).is_some() => {
                format!("origin {} is allowed", String::from_utf8_lossy(o.as_bytes()))
            }
            Some(o) => format!(
                "origin {} is not allowed (no CORS headers; a preflight gets 403)",
                String::from_utf8_lossy(o.as_bytes())
            ),
        };
        format!("origins {origins}; methods {}; {verdict}", methods.join(", "))
    }

    pub fn new(c: &CorsConfig) -> Result<Self, String> {
        let join = |items: Vec<&str>, sep: &str| HeaderValue::from_str(&items.join(sep)).map_err(|e| e.to_string());
        let methods_list: Vec<&str> = c.methods.iter().map(Method::as_str).collect();
        let allow_headers = match &c.headers {
            Some(list) => Some(join(list.iter().map(|h| h.as_str()).collect(), ", ")?),
            None => None,
        };
        let expose_headers = match c.expose_headers.is_empty() {
            true => None,
            false => Some(join(c.expose_headers.iter().map(|h| h.as_str()).collect(), ", ")?),
        };
        Ok(CorsPolicy {
            origins: c.origins.clone(),
            methods: c.methods.clone(),
            allow_methods: join(methods_list, ", ")?,
            allow_headers,
            expose_headers,
            credentials: c.credentials,
            max_age: c.max_age.map(|d| HeaderValue::from(d.as_secs())),
        })
    }

    /// The request's Origin when this policy allows it.
    pub fn allowed_origin(&self, req: &RequestHeader) -> Option<HeaderValue> {
        let origin = req.headers.get(header::ORIGIN)?;
        let ok = match &self.origins {
            None => true,
            Some(list) => list
                .iter()
                .any(|o| o.as_bytes().eq_ignore_ascii_case(origin.as_bytes())),
        };
        ok.then(|| origin.clone())
    }

    /// The 204 answer to a preflight, or a refusal (without CORS headers).
    pub fn preflight(&self, req: &RequestHeader, method: &Method) -> Result<ResponseHeader, GatewayError> {
        let origin = self.allowed_origin(req).ok_or(GatewayError::CorsRefused)?;
        if !self.methods.contains(method) {
            return Err(GatewayError::CorsRefused);
        }
        let mut resp = ResponseHeader::build(204, Some(8)).map_err(|_| GatewayError::Internal)?;
        let asked_headers = req.headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS).cloned();
        let pairs = [
            (header::ACCESS_CONTROL_ALLOW_METHODS, Some(self.allow_methods.clone())),
            (
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                self.allow_headers.clone().or(asked_headers),
            ),
            (header::ACCESS_CONTROL_MAX_AGE, self.max_age.clone()),
        ];
        for (name, value) in pairs {
            if let Some(v) = value {
                resp.insert_header(name, v).map_err(|_| GatewayError::Internal)?;
            }
        }
        self.allow(&mut resp, origin).map_err(|_| GatewayError::Internal)?;
        resp.append_header(
            header::VARY,
            "Access-Control-Request-Method, Access-Control-Request-Headers",
        )
        .map_err(|_| GatewayError::Internal)?;
        Ok(resp)
    }

    /// CORS headers on an actual response, for an origin `allowed_origin` accepted.
    pub fn decorate(&self, resp: &mut ResponseHeader, origin: Option<&HeaderValue>) -> pingora::Result<()> {
        if self.origins.is_some() {
            resp.append_header(header::VARY, "Origin")?;
        }
        let Some(origin) = origin else {
            return Ok(());
        };
        if let Some(expose) = &self.expose_headers {
            resp.insert_header(header::ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone())?;
        }
        self.allow(resp, origin.clone())
    }

    fn allow(&self, resp: &mut ResponseHeader, origin: HeaderValue) -> pingora::Result<()> {
        // `*` only where it means the same thing and credentials are not involved.
        let value = if self.origins.is_none() && !self.credentials {
            HeaderValue::from_static("*")
        } else {
            origin
        };
        resp.insert_header(header::ACCESS_CONTROL_ALLOW_ORIGIN, value)?;
        if self.credentials {
            resp.insert_header(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, "true")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn policy(origins: Option<Vec<&str>>, credentials: bool) -> CorsPolicy {
        CorsPolicy::new(&CorsConfig {
            origins: origins.map(|o| o.into_iter().map(String::from).collect()),
            methods: vec![Method::GET, Method::POST],
            headers: None,
            expose_headers: vec![http::HeaderName::from_static("x-total")],
            credentials,
            max_age: Some(Duration::from_secs(600)),
        })
        .unwrap()
    }

    fn preflight_req(origin: &str, method: &str) -> RequestHeader {
        let mut r = RequestHeader::build("OPTIONS", b"/x", None).unwrap();
        r.insert_header("origin", origin).unwrap();
        r.insert_header("access-control-request-method", method).unwrap();
        r.insert_header("access-control-request-headers", "content-type, x-custom")
            .unwrap();
        r
    }

    #[test]
    fn allowed_preflight_gets_204_with_allow_headers() {
        let p = policy(Some(vec!["https://app.example.com"]), true);
        let req = preflight_req("https://app.example.com", "POST");
        assert_eq!(preflight_method(&req), Some(Method::POST));
        let resp = p.preflight(&req, &Method::POST).unwrap();
        assert_eq!(resp.status, 204);
        let h = &resp.headers;
        assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
        assert_eq!(h["access-control-allow-credentials"], "true");
        assert_eq!(h["access-control-allow-methods"], "GET, POST");
        assert_eq!(h["access-control-allow-headers"], "content-type, x-custom");
        assert_eq!(h["access-control-max-age"], "600");
    }

    #[test]
    fn refused_origin_or_method_gets_no_cors_headers() {
        let p = policy(Some(vec!["https://app.example.com"]), false);
        let evil = preflight_req("https://evil.example", "GET");
        assert_eq!(p.preflight(&evil, &Method::GET).unwrap_err(), GatewayError::CorsRefused);
        let delete = preflight_req("https://app.example.com", "DELETE");
        assert_eq!(
            p.preflight(&delete, &Method::DELETE).unwrap_err(),
            GatewayError::CorsRefused
        );
        assert!(p.allowed_origin(&evil).is_none());
    }

    #[test]
    fn any_origin_without_credentials_answers_star() {
        let p = policy(None, false);
        let req = preflight_req("https://whoever.example", "GET");
        let mut resp = ResponseHeader::build(200, None).unwrap();
        p.decorate(&mut resp, p.allowed_origin(&req).as_ref()).unwrap();
        assert_eq!(resp.headers["access-control-allow-origin"], "*");
        assert_eq!(resp.headers["access-control-expose-headers"], "x-total");
        assert!(resp.headers.get("vary").is_none());
    }
}
