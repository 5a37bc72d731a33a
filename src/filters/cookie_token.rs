//! Cookie → Authorization: browsers keep the token in a cookie; the backend (and the auth
//! step) expect `Authorization: Bearer`. An explicit Authorization header wins.

use http::header::{AUTHORIZATION, COOKIE};
use pingora::http::RequestHeader;

pub struct CookieToken {
    name: String,
}

impl CookieToken {
    pub fn new(name: &str) -> Self {
        CookieToken { name: name.to_string() }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn apply(&self, req: &mut RequestHeader) {
        if req.headers.contains_key(AUTHORIZATION) {
            return;
        }
        let token = req
            .headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|pair| {
                let (k, v) = pair.trim().split_once('=')?;
                (k == self.name && !v.is_empty()).then(|| v.trim_matches('"').to_string())
            });
        if let Some(token) = token {
            // A cookie value that is not a valid header value is simply not used.
            let _ = req.insert_header(AUTHORIZATION, format!("Bearer {token}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_named_cookie_becomes_a_bearer_header_unless_one_is_present() {
        let step = CookieToken::new("token");
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        r.insert_header("cookie", "a=1; token=abc.def.ghi; b=2").unwrap();
        step.apply(&mut r);
        assert_eq!(r.headers["authorization"], "Bearer abc.def.ghi");

        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        r.insert_header("cookie", "token=from-cookie").unwrap();
        r.insert_header("authorization", "Bearer explicit").unwrap();
        step.apply(&mut r);
        assert_eq!(r.headers["authorization"], "Bearer explicit");
    }
}
