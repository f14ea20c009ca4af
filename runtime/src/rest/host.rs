//! DNS rebinding guard: a loopback API without authentication is reachable by any web page the
//! worker's user opens, through a name the attacker points at 127.0.0.1. Such requests carry the
//! attacker's name in their Host header, so without authentication a loopback API answers only
//! requests that name it by a loopback name or address, its advertised host, or a configured name.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::warn;

use super::ApiError;
use crate::config::RestSettings;

/// The host names a request may carry; `None` when any is accepted (authentication is on, or
/// the listener is not loopback and so is reached by names this worker cannot know).
#[derive(Debug)]
pub(crate) struct HostCheck {
    allowed: Option<Vec<String>>,
}

impl HostCheck {
    pub(crate) fn new(rest: &RestSettings) -> Self {
        let guarded = !rest.auth.enabled() && super::security::is_loopback(&rest.listen);
        let allowed = guarded.then(|| {
            let mut names: Vec<String> = rest
                .allowed_hosts
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect();
            if let Some(host) = rest.advertised_url.as_deref().and_then(url_host) {
                names.push(host);
            }
            names
        });
        Self { allowed }
    }

    fn admits(&self, host: &str) -> bool {
        let Some(allowed) = &self.allowed else {
            return true;
        };
        let host = strip_port(host).to_ascii_lowercase();
        is_loopback_name(&host) || allowed.contains(&host)
    }
}

/// `host[:port]` or `[v6][:port]` -> the host.
fn strip_port(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(h, _)| h);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => authority,
    }
}

fn is_loopback_name(host: &str) -> bool {
    host == "localhost"
        || host.ends_with(".localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The host of `scheme://host[:port]/...`, lower case.
fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let host = strip_port(authority);
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// The middleware: refuses a request whose Host (or HTTP/2 authority) names another host.
pub(crate) async fn check(
    State(hosts): State<Arc<HostCheck>>,
    request: Request,
    next: Next,
) -> Response {
    let host = request
        .headers()
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| request.uri().authority().map(|a| a.as_str().to_owned()));
    match host {
        Some(host) if !hosts.admits(&host) => {
            warn!(%host, path = %request.uri().path(), "refused a request naming a foreign host (DNS rebinding guard)");
            ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "Host `{host}` is not this worker's: without rest.auth a loopback API answers only loopback names and rest.allowed_hosts"
                ),
            )
            .into_response()
        }
        _ => next.run(request).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(listen: &str, allowed: &[&str], advertised: Option<&str>) -> HostCheck {
        let defaults = crate::config::rest_spec()
            .validate(&serde_json::Map::new())
            .unwrap();
        let mut rest: RestSettings =
            serde_json::from_value(serde_json::Value::Object(defaults.0)).unwrap();
        rest.listen = listen.to_owned();
        rest.allowed_hosts = allowed.iter().map(|s| (*s).to_owned()).collect();
        rest.advertised_url = advertised.map(str::to_owned);
        HostCheck::new(&rest)
    }

    #[test]
    fn loopback_without_auth_admits_only_its_own_names() {
        let hosts = check(
            "127.0.0.1:8083",
            &["Sluice.Internal"],
            Some("http://w1:9000"),
        );
        for ok in [
            "127.0.0.1:8083",
            "localhost",
            "LOCALHOST:1",
            "[::1]:8083",
            "a.localhost",
            "sluice.internal:8083",
            "w1:9000",
        ] {
            assert!(hosts.admits(ok), "{ok}");
        }
        for refused in [
            "evil.example",
            "evil.example:8083",
            "127.0.0.1.evil.example",
            "[::2]:1",
        ] {
            assert!(!hosts.admits(refused), "{refused}");
        }
        let open = check("0.0.0.0:8083", &[], None);
        assert!(open.admits("evil.example"));
    }
}
