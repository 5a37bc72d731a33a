//! Gateway-made errors and the one place that maps them (and Pingora's) to statuses.

use pingora::{Error, ErrorSource, ErrorType};
use std::borrow::Cow;

/// Every answer the gateway makes up itself instead of relaying the upstream's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayError {
    /// Malformed or unsafe request.
    BadRequest(&'static str),
    /// A request head refused before routing (framing, limits, timeout): 400, 408, 414,
    /// 417, 431, 501 or 505.
    BadHead { status: u16, reason: &'static str },
    /// No route matches.
    NotFound,
    /// A route matches all but the method; `allow` is the `Allow` header.
    MethodNotAllowed { allow: String },
    /// No valid credential: 401 with `challenge` as WWW-Authenticate.
    Unauthorized {
        description: Cow<'static, str>,
        challenge: String,
    },
    /// The forward-auth service refused: its own answer (with this status) was relayed.
    ForwardAuthDenied { status: u16 },
    /// Authenticated, but the route needs a scope or role the caller lacks.
    Forbidden {
        reason: Cow<'static, str>,
        challenge: Option<String>,
    },
    /// The client address is not allowed on this route.
    IpDenied,
    /// The route (or the listener) needs a verified client certificate and the connection
    /// has none.
    ClientCertRequired,
    /// A CORS preflight from an origin (or for a method) the policy does not allow.
    CorsRefused,
    /// The request body is larger than the route's `max_body`.
    PayloadTooLarge,
    /// The identity provider (JWKS or token introspection) could not be reached: 503
    /// `idp_unavailable`, since the credential could not be checked either way.
    Unavailable(&'static str),
    /// Over a rate limit: 429 with Retry-After (seconds).
    RateLimited { retry_after: u64 },
    /// The upstream's circuit is open: refused without touching it.
    CircuitOpen { upstream: String },
    /// Every target of the upstream is unhealthy.
    NoHealthyTarget { upstream: String },
    /// Could not connect, or the connection failed before a complete response.
    BadGateway,
    /// Connect, read or write towards the upstream timed out.
    GatewayTimeout,
    /// A bug or an unexpected condition inside the gateway.
    Internal,
    /// The client went away; nothing can be sent.
    ClientGone,
}

impl GatewayError {
    /// The HTTP status; 0 when no response can be sent.
    pub fn status(&self) -> u16 {
        match self {
            GatewayError::BadRequest(_) => 400,
            GatewayError::BadHead { status, .. } => *status,
            GatewayError::NotFound => 404,
            GatewayError::MethodNotAllowed { .. } => 405,
            GatewayError::Unauthorized { .. } => 401,
            GatewayError::ForwardAuthDenied { status } => *status,
            GatewayError::Forbidden { .. }
            | GatewayError::IpDenied
            | GatewayError::CorsRefused
            | GatewayError::ClientCertRequired => 403,
            GatewayError::PayloadTooLarge => 413,
            GatewayError::RateLimited { .. } => 429,
            GatewayError::CircuitOpen { .. } => 503,
            GatewayError::Unavailable(_) => 503,
            GatewayError::NoHealthyTarget { .. } => 503,
            GatewayError::BadGateway => 502,
            GatewayError::GatewayTimeout => 504,
            GatewayError::Internal => 500,
            GatewayError::ClientGone => 0,
        }
    }

    /// The `code` of the JSON body, for errors a client may want to tell apart.
    pub fn code(&self) -> Option<&'static str> {
        match self {
            GatewayError::Unavailable(_) => Some("idp_unavailable"),
            GatewayError::ClientCertRequired => Some("client_certificate_required"),
            _ => None,
        }
    }

    /// The `error` text of the JSON body.
    pub fn message(&self) -> Cow<'static, str> {
        match self {
            GatewayError::BadRequest(why) => Cow::Borrowed(why),
            GatewayError::BadHead { reason, .. } => Cow::Borrowed(reason),
            GatewayError::NotFound => Cow::Borrowed("no route matches this request"),
            GatewayError::MethodNotAllowed { .. } => Cow::Borrowed("method not allowed on this route"),
            GatewayError::Unauthorized { description, .. } => description.clone(),
            GatewayError::Forbidden { reason, .. } => reason.clone(),
            GatewayError::ForwardAuthDenied { .. } => Cow::Borrowed("refused by the authorization service"),
            GatewayError::IpDenied => Cow::Borrowed("client address not allowed"),
            GatewayError::ClientCertRequired => {
                Cow::Borrowed("a verified client certificate is required (present one in the TLS handshake)")
            }
            GatewayError::CorsRefused => Cow::Borrowed("CORS preflight refused for this origin or method"),
            GatewayError::PayloadTooLarge => Cow::Borrowed("request body too large"),
            GatewayError::RateLimited { .. } => Cow::Borrowed("rate limit exceeded"),
            GatewayError::CircuitOpen { upstream } => Cow::Owned(format!("circuit open for upstream {upstream}")),
            GatewayError::Unavailable(what) => Cow::Borrowed(what),
            GatewayError::NoHealthyTarget { upstream } => {
                Cow::Owned(format!("no healthy target in upstream {upstream}"))
            }
            GatewayError::BadGateway => Cow::Borrowed("the upstream could not be reached or failed"),
            GatewayError::GatewayTimeout => Cow::Borrowed("the upstream did not answer in time"),
            GatewayError::Internal => Cow::Borrowed("internal gateway error"),
            GatewayError::ClientGone => Cow::Borrowed("client closed the connection"),
        }
    }

    /// The rejection class for logs and metrics, when the gateway refused the request.
    pub fn rejection(&self) -> Option<&'static str> {
        match self {
            GatewayError::Unauthorized { .. } | GatewayError::ForwardAuthDenied { .. } => Some("auth"),
            GatewayError::Forbidden { .. } => Some("forbidden"),
            GatewayError::IpDenied => Some("ip"),
            GatewayError::ClientCertRequired => Some("client_cert"),
            GatewayError::CorsRefused => Some("cors"),
            GatewayError::PayloadTooLarge => Some("body_limit"),
            GatewayError::RateLimited { .. } => Some("rate_limit"),
            GatewayError::BadHead { .. } => Some("malformed"),
            _ => None,
        }
    }

    /// The WWW-Authenticate challenge that goes with a 401 (or a 403 for scope).
    pub fn challenge(&self) -> Option<&str> {
        match self {
            GatewayError::Unauthorized { challenge, .. } => Some(challenge),
            GatewayError::Forbidden { challenge, .. } => challenge.as_deref(),
            _ => None,
        }
    }

    /// Classifies an error Pingora reports while proxying.
    pub fn from_pingora(e: &Error) -> Self {
        use ErrorType::*;
        match e.etype() {
            HTTPStatus(code) => from_status(*code),
            ConnectTimedout | ReadTimedout | WriteTimedout | TLSHandshakeTimedout => match e.esource() {
                ErrorSource::Downstream => GatewayError::ClientGone,
                _ => GatewayError::GatewayTimeout,
            },
            _ => match e.esource() {
                ErrorSource::Upstream => GatewayError::BadGateway,
                ErrorSource::Downstream => match e.etype() {
                    // A reset h2 stream (a cancelled call) is a client that went away.
                    ReadError | WriteError | ConnectionClosed | H2Error => GatewayError::ClientGone,
                    _ => GatewayError::BadRequest("malformed request"),
                },
                ErrorSource::Internal | ErrorSource::Unset => GatewayError::Internal,
            },
        }
    }
}

/// The `gateway_downstream_errors_total` kind of an error on the client's side, if it is
/// one: routine at the edge, so counted and logged at debug, not at error.
pub fn downstream_kind(e: &Error) -> Option<&'static str> {
    use ErrorType::*;
    if *e.esource() != ErrorSource::Downstream {
        return None;
    }
    Some(match e.etype() {
        H2Error => "h2_reset",
        InvalidH2 | H2Downgrade => "h2_protocol",
        ReadTimedout | WriteTimedout => "client_timeout",
        ReadError | WriteError | ConnectionClosed => "client_closed",
        _ => "bad_request",
    })
}

fn from_status(code: u16) -> GatewayError {
    match code {
        400 => GatewayError::BadRequest("bad request"),
        413 => GatewayError::PayloadTooLarge,
        404 => GatewayError::NotFound,
        502 => GatewayError::BadGateway,
        504 => GatewayError::GatewayTimeout,
        _ => GatewayError::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_of(etype: ErrorType, source: ErrorSource) -> u16 {
        let mut e = Error::new(etype);
        e.esource = source;
        GatewayError::from_pingora(&e).status()
    }

    #[test]
    fn upstream_failures_map_to_502_and_504() {
        assert_eq!(status_of(ErrorType::ConnectRefused, ErrorSource::Upstream), 502);
        assert_eq!(status_of(ErrorType::ConnectionClosed, ErrorSource::Upstream), 502);
        assert_eq!(status_of(ErrorType::ConnectTimedout, ErrorSource::Upstream), 504);
        assert_eq!(status_of(ErrorType::ReadTimedout, ErrorSource::Upstream), 504);
    }

    #[test]
    fn client_side_failures_send_nothing_or_400() {
        assert_eq!(status_of(ErrorType::ReadError, ErrorSource::Downstream), 0);
        assert_eq!(status_of(ErrorType::InvalidHTTPHeader, ErrorSource::Downstream), 400);
        assert_eq!(status_of(ErrorType::InternalError, ErrorSource::Internal), 500);
    }

    #[test]
    fn client_side_errors_have_a_kind_and_upstream_ones_none() {
        let kind = |etype, source| {
            let mut e = Error::new(etype);
            e.esource = source;
            downstream_kind(&e)
        };
        assert_eq!(kind(ErrorType::H2Error, ErrorSource::Downstream), Some("h2_reset"));
        assert_eq!(kind(ErrorType::InvalidH2, ErrorSource::Downstream), Some("h2_protocol"));
        assert_eq!(
            kind(ErrorType::ConnectionClosed, ErrorSource::Downstream),
            Some("client_closed")
        );
        assert_eq!(kind(ErrorType::H2Error, ErrorSource::Upstream), None);
        assert_eq!(
            status_of(ErrorType::H2Error, ErrorSource::Downstream),
            0,
            "nothing to answer"
        );
    }

    #[test]
    fn gateway_decisions_have_their_own_statuses() {
        assert_eq!(GatewayError::NoHealthyTarget { upstream: "u".into() }.status(), 503);
        assert_eq!(GatewayError::MethodNotAllowed { allow: "GET".into() }.status(), 405);
        assert_eq!(GatewayError::NotFound.status(), 404);
    }
}
