//! Fetching images sent by URL: bounded in time and size, retried on transient failures, and
//! never reaching loopback, private or link-local addresses unless the operator allows it (a
//! contributor's URL must not make the DVA probe the cluster's own network).

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use gata_infra::config::DvaConfig;
use reqwest::{
    StatusCode,
    dns::{Addrs, Name, Resolve, Resolving},
    redirect,
};
use url::{Host, Url};

use crate::{ProcessorError, Result};

/// Why an image could not be fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchFailure {
    /// `image_unreachable` or `image_too_large`.
    pub code: &'static str,
    /// What happened, for people.
    pub reason: String,
}

impl FetchFailure {
    fn unreachable(reason: impl Into<String>) -> Self {
        Self { code: "image_unreachable", reason: reason.into() }
    }

    fn too_large(reason: impl Into<String>) -> Self {
        Self { code: "image_too_large", reason: reason.into() }
    }
}

/// An HTTP client for image URLs.
pub struct Fetcher {
    client: reqwest::Client,
    /// Whether URLs may point at loopback, private and link-local addresses.
    allow_private: bool,
    /// Attempts after the first, for timeouts, refused connections, 5xx and 429.
    retries: u32,
    /// Largest image accepted, in bytes.
    max_bytes: usize,
}

/// Most redirects followed.
const MAX_REDIRECTS: usize = 5;

impl Fetcher {
    /// A client as `cfg` says (`dva.fetch_*`, `dva.allow_private_urls`) for images of at most
    /// `max_bytes`.
    pub fn new(cfg: &DvaConfig, max_bytes: usize) -> Result<Self> {
        let allow_private = cfg.allow_private_urls;
        let redirects = redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= MAX_REDIRECTS {
                attempt.error(format!("more than {MAX_REDIRECTS} redirects"))
            } else if let Some(why) = refused_host(attempt.url(), allow_private) {
                attempt.error(why)
            } else {
                attempt.follow()
            }
        });
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("gata-dva/", env!("CARGO_PKG_VERSION")))
            .timeout(cfg.fetch_timeout)
            .connect_timeout(cfg.fetch_connect_timeout)
            .redirect(redirects)
            .no_proxy();
        if !allow_private {
            builder = builder.dns_resolver(Arc::new(PublicOnly));
        }
        let client = builder.build().map_err(ProcessorError::ImageClient)?;
        Ok(Self { client, allow_private, retries: cfg.fetch_retries, max_bytes })
    }

    /// The image file at `url`, or why it cannot be had.
    pub async fn fetch(&self, url: &Url) -> std::result::Result<Vec<u8>, FetchFailure> {
        if let Some(why) = refused_host(url, self.allow_private) {
            return Err(FetchFailure::unreachable(why));
        }
        let mut attempt = 0;
        loop {
            match self.once(url).await {
                Ok(bytes) => return Ok(bytes),
                Err(Attempt::Final(failure)) => return Err(failure),
                Err(Attempt::Transient(reason)) if attempt >= self.retries => {
                    let tries = attempt + 1;
                    return Err(FetchFailure::unreachable(format!("{reason} ({tries} attempts)")));
                }
                Err(Attempt::Transient(reason)) => {
                    tracing::debug!(%url, attempt, %reason, "image fetch failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200 << attempt.min(6))).await;
                    attempt += 1;
                }
            }
        }
    }

    async fn once(&self, url: &Url) -> std::result::Result<Vec<u8>, Attempt> {
        let max = self.max_bytes;
        let mut response = self.client.get(url.clone()).send().await.map_err(|e| classify(&e))?;
        let status = response.status();
        if !status.is_success() {
            let reason = format!("HTTP {status}");
            let transient = status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS;
            return Err(if transient {
                Attempt::Transient(reason)
            } else {
                Attempt::Final(FetchFailure::unreachable(reason))
            });
        }
        if let Some(length) = response.content_length().filter(|l| *l > max as u64) {
            return Err(Attempt::Final(FetchFailure::too_large(format!("image is {length} bytes; at most {max}"))));
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| classify(&e))? {
            if bytes.len() + chunk.len() > max {
                return Err(Attempt::Final(FetchFailure::too_large(format!("image is over {max} bytes"))));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }
}

/// One attempt's failure: worth retrying or not.
enum Attempt {
    Transient(String),
    Final(FetchFailure),
}

/// Timeouts and connection failures are worth another attempt; anything else is final. The
/// reason names the kind of failure and its causes (the URL is already in the failure's context).
fn classify(err: &reqwest::Error) -> Attempt {
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "cannot connect"
    } else if err.is_redirect() {
        "redirect refused"
    } else if err.is_body() || err.is_decode() {
        "reading the body failed"
    } else {
        "request failed"
    };
    let mut reason = kind.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        reason.push_str(": ");
        reason.push_str(&s.to_string());
        source = s.source();
    }
    if err.is_timeout() || err.is_connect() {
        Attempt::Transient(reason)
    } else {
        Attempt::Final(FetchFailure::unreachable(reason))
    }
}

/// Why `url`'s host is refused, when it is a literal address that is not public.
fn refused_host(url: &Url, allow_private: bool) -> Option<String> {
    if allow_private {
        return None;
    }
    let ip = match url.host()? {
        Host::Ipv4(ip) => IpAddr::V4(ip),
        Host::Ipv6(ip) => IpAddr::V6(ip),
        Host::Domain(domain) if domain.eq_ignore_ascii_case("localhost") => return Some(private_refusal("localhost")),
        Host::Domain(_) => return None,
    };
    (!is_public(ip)).then(|| private_refusal(&ip.to_string()))
}

fn private_refusal(host: &str) -> String {
    format!("{host} is a loopback, private or link-local address (dva.allow_private_urls is off)")
}

/// Whether `ip` is a globally routable unicast address.
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b)))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

/// Resolves names to their public addresses only; a name with none is refused.
struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = addrs.into_iter().filter(|a| is_public(a.ip())).collect();
            if public.is_empty() {
                return Err(private_refusal(&host).into());
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_pass() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(private.parse().expect("ip")), "{private}");
        }
        for public in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "::ffff:1.1.1.1"] {
            assert!(is_public(public.parse().expect("ip")), "{public}");
        }
    }

    #[test]
    fn literal_private_hosts_are_refused_unless_allowed() {
        let url = |s: &str| Url::parse(s).expect("url");
        assert!(refused_host(&url("http://127.0.0.1:8080/a.png"), false).is_some());
        assert!(refused_host(&url("http://[::1]/a.png"), false).is_some());
        assert!(refused_host(&url("http://LOCALHOST/a.png"), false).is_some());
        assert!(refused_host(&url("http://169.254.169.254/latest/meta-data"), false).is_some());
        assert!(refused_host(&url("https://images.example.org/a.png"), false).is_none());
        assert!(refused_host(&url("http://127.0.0.1:8080/a.png"), true).is_none());
    }
}
