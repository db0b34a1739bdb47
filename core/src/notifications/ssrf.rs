//! The guard against server-side request forgery: a webhook URL must not make the server
//! reach what only the server can reach (itself, its network, the cloud metadata
//! service).
//!
//! How a URL is judged:
//! 1. Syntax, at channel creation and again at each delivery ([`check_url`]): `http` or
//!    `https`, a host, no user name or password. The URL is parsed the way browsers do,
//!    so every other spelling of an address (`2130706433`, `0x7f.1`, `017700000001`,
//!    `[::ffff:127.0.0.1]`) is already the address it means when it is judged.
//! 2. Resolution, once per delivery ([`Guard::resolve`]): an address literal is taken as
//!    is; a name is looked up once through a [`Resolver`]. **Every** address of the
//!    answer must be allowed ([`refusal`] says why one is not), or the delivery is
//!    refused; an admin allow-list of CIDRs (`webhook_allow_cidrs`) lets through
//!    addresses it contains, judged after resolution.
//! 3. The request is then made to exactly the addresses judged (the HTTP client is
//!    pinned to them, with the URL's host in `Host` and for TLS), so an answer that
//!    changes between two lookups (DNS rebinding) cannot move it elsewhere; redirects are
//!    never followed (a 3xx is a failure saying so).
//!
//! IPv6 addresses that carry an IPv4 address (mapped `::ffff:a.b.c.d`, compatible
//! `::a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`, 6to4 `2002:AABB:CCDD::`) are judged by the IPv4
//! address they carry; Teredo (`2001::/32`) is refused, since where it leads cannot be
//! told from the address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use futures::future::BoxFuture;
use ipnet::IpNet;
use reqwest::Url;

/// Looks names up; the system's resolver in the server, a scripted one in tests.
pub trait Resolver: Send + Sync {
    /// The addresses of `host` (a name, never a literal) for `port`.
    fn lookup<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> BoxFuture<'a, std::io::Result<Vec<SocketAddr>>>;
}

/// The system's resolver (`getaddrinfo` through tokio).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn lookup<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> BoxFuture<'a, std::io::Result<Vec<SocketAddr>>> {
        Box::pin(async move { Ok(tokio::net::lookup_host((host, port)).await?.collect()) })
    }
}

/// Checks a webhook URL's syntax: `http`/`https`, a host, no credentials, at most 2048
/// bytes. The error says what to change.
pub fn check_url(url: &str) -> Result<Url, String> {
    if url.len() > 2048 {
        return Err("is longer than 2048 bytes".into());
    }
    let parsed = Url::parse(url).map_err(|e| format!("{url:?} is not a URL ({e})"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "{url:?} uses {}:; only http:// and https:// URLs are allowed",
            parsed.scheme()
        ));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(
            "has credentials in it; put them in a header (headers) or rely on the signature".into(),
        );
    }
    if parsed.host().is_none() {
        return Err(format!("{url:?} has no host"));
    }
    Ok(parsed)
}

fn v4(a: u8, b: u8, c: u8, d: u8) -> Ipv4Addr {
    Ipv4Addr::new(a, b, c, d)
}

fn in_v4(ip: Ipv4Addr, net: Ipv4Addr, prefix: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    (u32::from(ip) & mask) == (u32::from(net) & mask)
}

fn in_v6(ip: Ipv6Addr, net: Ipv6Addr, prefix: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - prefix)
    };
    (u128::from(ip) & mask) == (u128::from(net) & mask)
}

/// Why an IPv4 address may not be reached; `None` if it may.
fn refusal_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let ranges: [(Ipv4Addr, u32, &'static str); 17] = [
        (v4(169, 254, 169, 254), 32, "the cloud metadata address"),
        (
            v4(0, 0, 0, 0),
            8,
            "an unspecified (\"this network\") address",
        ),
        (v4(127, 0, 0, 0), 8, "a loopback address"),
        (v4(10, 0, 0, 0), 8, "a private address"),
        (v4(172, 16, 0, 0), 12, "a private address"),
        (v4(192, 168, 0, 0), 16, "a private address"),
        (v4(100, 64, 0, 0), 10, "a shared (CGNAT) address"),
        (v4(169, 254, 0, 0), 16, "a link-local address"),
        (v4(192, 0, 0, 0), 24, "an IETF protocol assignment"),
        (v4(192, 0, 2, 0), 24, "a documentation address"),
        (v4(198, 51, 100, 0), 24, "a documentation address"),
        (v4(203, 0, 113, 0), 24, "a documentation address"),
        (v4(198, 18, 0, 0), 15, "a benchmarking address"),
        (v4(224, 0, 0, 0), 4, "a multicast address"),
        (v4(255, 255, 255, 255), 32, "the broadcast address"),
        (v4(240, 0, 0, 0), 4, "a reserved address"),
        (v4(192, 88, 99, 0), 24, "a 6to4 relay address"),
    ];
    ranges
        .iter()
        .find(|(net, prefix, _)| in_v4(ip, *net, *prefix))
        .map(|(_, _, why)| *why)
}

/// The IPv4 address an IPv6 address carries (mapped, compatible, NAT64, 6to4), if any.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let o = ip.octets();
    let tail = || Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    if let Some(mapped) = ip.to_ipv4_mapped() {
        return Some(mapped);
    }
    // ::a.b.c.d (deprecated "compatible"); :: and ::1 are judged as themselves.
    if o[..12].iter().all(|b| *b == 0) && u128::from(ip) > 1 {
        return Some(tail());
    }
    if in_v6(ip, Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96)
        || in_v6(ip, Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48)
    {
        return Some(tail());
    }
    if in_v6(ip, Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16) {
        return Some(Ipv4Addr::new(o[2], o[3], o[4], o[5]));
    }
    None
}

/// Why an IPv6 address may not be reached; `None` if it may.
fn refusal_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(inner) = embedded_v4(ip) {
        return refusal_v4(inner);
    }
    let ranges: [(Ipv6Addr, u32, &'static str); 11] = [
        (
            Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254),
            128,
            "the cloud metadata address",
        ),
        (Ipv6Addr::UNSPECIFIED, 128, "the unspecified address"),
        (Ipv6Addr::LOCALHOST, 128, "the loopback address"),
        (
            Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0),
            7,
            "a unique local (private) address",
        ),
        (
            Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0),
            10,
            "a link-local address",
        ),
        (
            Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0),
            10,
            "a site-local address",
        ),
        (
            Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0),
            8,
            "a multicast address",
        ),
        (
            Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0),
            32,
            "a documentation address",
        ),
        (
            Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0),
            20,
            "a documentation address",
        ),
        (
            Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0),
            32,
            "a Teredo tunnel address",
        ),
        (
            Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0),
            64,
            "a discard-only address",
        ),
    ];
    ranges
        .iter()
        .find(|(net, prefix, _)| in_v6(ip, *net, *prefix))
        .map(|(_, _, why)| *why)
}

/// Why `ip` may not be reached without the allow-list; `None` if it may.
pub fn refusal(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(ip) => refusal_v4(ip),
        IpAddr::V6(ip) => refusal_v6(ip),
    }
}

/// Parses an allow-list: CIDRs (`10.0.0.0/8`, `fd00::/8`) or single addresses.
pub fn parse_cidrs(items: &[String]) -> Result<Vec<IpNet>, String> {
    items
        .iter()
        .map(|item| {
            let item = item.trim();
            item.parse::<IpNet>()
                .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    format!(
                        "{item:?} is not a CIDR or an address; write e.g. 10.0.0.0/8 or 127.0.0.1"
                    )
                })
        })
        .collect()
}

/// What a delivery may connect to: the URL, its host as written, and the addresses.
#[derive(Clone, Debug)]
pub struct Target {
    pub url: Url,
    /// The host name (or the literal, without brackets).
    pub host: String,
    /// Every address judged allowed; the request goes to these only.
    pub addrs: Vec<SocketAddr>,
}

/// The guard: the allow-list and the judgement. See the module docs.
#[derive(Clone, Debug, Default)]
pub struct Guard {
    allow: Vec<IpNet>,
}

impl Guard {
    /// A guard letting through the addresses in `allow` (an admin's choice).
    pub fn new(allow: Vec<IpNet>) -> Guard {
        Guard { allow }
    }

    /// Whether `ip` may be reached: `Err` says why not.
    pub fn permit(&self, ip: IpAddr) -> Result<(), String> {
        // An IPv4 address in IPv6 clothing is allowed (or not) as the IPv4 address.
        let canonical = match ip {
            IpAddr::V6(v6) => embedded_v4(v6).map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        if self
            .allow
            .iter()
            .any(|net| net.contains(&canonical) || net.contains(&ip))
        {
            return Ok(());
        }
        match refusal(ip) {
            None => Ok(()),
            Some(why) => Err(format!(
                "{ip} is {why}; webhooks may not reach it (an admin may allow it with webhook_allow_cidrs)"
            )),
        }
    }

    /// Resolves `url` once and judges every address (see the module docs).
    pub async fn resolve(&self, resolver: &dyn Resolver, url: &str) -> Result<Target, String> {
        let url = check_url(url)?;
        let port = url
            .port_or_known_default()
            .ok_or_else(|| format!("{url} has no port"))?;
        let (host, addrs) = match url.host() {
            Some(url::Host::Ipv4(ip)) => (ip.to_string(), vec![SocketAddr::new(ip.into(), port)]),
            Some(url::Host::Ipv6(ip)) => (ip.to_string(), vec![SocketAddr::new(ip.into(), port)]),
            Some(url::Host::Domain(name)) => {
                let name = name.trim_end_matches('.').to_owned();
                let addrs = resolver
                    .lookup(&name, port)
                    .await
                    .map_err(|e| format!("cannot resolve {name}: {e}"))?;
                if addrs.is_empty() {
                    return Err(format!("{name} has no address"));
                }
                (name, addrs)
            }
            None => return Err(format!("{url} has no host")),
        };
        for addr in &addrs {
            self.permit(addr.ip())
                .map_err(|why| format!("{host} resolves to {why}"))?;
        }
        Ok(Target { url, host, addrs })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use super::*;

    /// Answers each lookup with the next scripted answer, and counts lookups.
    struct Scripted {
        answers: Mutex<VecDeque<Vec<IpAddr>>>,
        lookups: Mutex<u32>,
    }

    impl Scripted {
        fn new(answers: Vec<Vec<IpAddr>>) -> Scripted {
            Scripted {
                answers: Mutex::new(answers.into()),
                lookups: Mutex::new(0),
            }
        }
    }

    impl Resolver for Scripted {
        fn lookup<'a>(
            &'a self,
            _host: &'a str,
            port: u16,
        ) -> BoxFuture<'a, std::io::Result<Vec<SocketAddr>>> {
            *self.lookups.lock().expect("lock") += 1;
            let next = self.answers.lock().expect("lock").pop_front();
            Box::pin(async move {
                next.map(|ips| {
                    ips.into_iter()
                        .map(|ip| SocketAddr::new(ip, port))
                        .collect()
                })
                .ok_or_else(|| std::io::Error::other("no more answers"))
            })
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    /// Every way of writing an address the guard must refuse, with what it means.
    const REFUSED: &[(&str, &str)] = &[
        ("http://127.0.0.1/", "loopback"),
        ("http://127.1/", "loopback"),
        ("http://2130706433/", "loopback"),
        ("http://0x7f000001/", "loopback"),
        ("http://0x7f.0.0.1/", "loopback"),
        ("http://017700000001/", "loopback"),
        ("http://0177.0.0.01/", "loopback"),
        ("http://[::1]/", "loopback"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),
        ("http://[::ffff:7f00:1]/", "loopback"),
        ("http://[::127.0.0.1]/", "loopback"),
        ("http://[64:ff9b::127.0.0.1]/", "loopback"),
        ("http://[2002:7f00:1::]/", "loopback"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://0/", "unspecified"),
        ("http://[::]/", "unspecified"),
        ("http://10.1.2.3/", "private"),
        ("http://172.16.0.1/", "private"),
        ("http://172.31.255.255/", "private"),
        ("http://192.168.1.1/", "private"),
        ("http://[::ffff:192.168.1.1]/", "private"),
        ("http://[fc00::1]/", "private"),
        ("http://[fd12:3456::1]/", "private"),
        ("http://100.64.0.1/", "CGNAT"),
        ("http://100.127.255.254/", "CGNAT"),
        ("http://169.254.169.254/latest/meta-data/", "metadata"),
        ("http://[::ffff:169.254.169.254]/", "metadata"),
        ("http://[fd00:ec2::254]/", "metadata"),
        ("http://169.254.10.10/", "link-local"),
        ("http://[fe80::1]/", "link-local"),
        ("http://224.0.0.1/", "multicast"),
        ("http://[ff02::1]/", "multicast"),
        ("http://255.255.255.255/", "broadcast"),
        ("http://192.0.2.10/", "documentation"),
        ("http://198.51.100.7/", "documentation"),
        ("http://203.0.113.9/", "documentation"),
        ("http://[2001:db8::1]/", "documentation"),
        ("http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/", "Teredo"),
        ("http://240.0.0.1/", "reserved"),
        ("http://198.18.0.1/", "benchmarking"),
    ];

    #[test]
    fn every_spelling_of_a_forbidden_address_is_refused() {
        let guard = Guard::default();
        let resolver = Scripted::new(vec![]);
        for (url, what) in REFUSED {
            let refused = block_on(guard.resolve(&resolver, url))
                .expect_err(&format!("{url} must be refused"));
            assert!(
                refused.contains(what) || refused.to_lowercase().contains(&what.to_lowercase()),
                "{url}: {refused} does not say {what}"
            );
        }
        assert_eq!(
            *resolver.lookups.lock().expect("lock"),
            0,
            "literals are not looked up"
        );
    }

    #[test]
    fn public_addresses_pass() {
        let guard = Guard::default();
        let resolver = Scripted::new(vec![]);
        for url in [
            "https://93.184.215.14/hook",
            "http://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]:8080/",
            "http://[::ffff:93.184.215.14]/",
            "http://[64:ff9b::93.184.215.14]/",
            "https://8.8.8.8:8443/x",
        ] {
            let target = block_on(guard.resolve(&resolver, url)).expect(url);
            assert_eq!(target.addrs.len(), 1, "{url}");
        }
    }

    #[test]
    fn names_are_judged_by_every_address_they_resolve_to() {
        let guard = Guard::default();
        let localhost = Scripted::new(vec![vec![ip("127.0.0.1"), ip("::1")]]);
        let refused = block_on(guard.resolve(&localhost, "http://localhost:8080/"))
            .expect_err("must be refused");
        assert!(refused.contains("loopback"), "{refused}");
        // One bad address among good ones refuses the name.
        let mixed = Scripted::new(vec![vec![ip("93.184.215.14"), ip("10.0.0.5")]]);
        let refused = block_on(guard.resolve(&mixed, "https://hooks.example.com/"))
            .expect_err("must be refused");
        assert!(refused.contains("private"), "{refused}");
        let mapped = Scripted::new(vec![vec![ip("::ffff:169.254.169.254")]]);
        let refused = block_on(guard.resolve(&mapped, "https://metadata.example/"))
            .expect_err("must be refused");
        assert!(refused.contains("metadata"), "{refused}");
    }

    #[test]
    fn a_name_is_resolved_once_and_the_request_is_pinned_to_that_answer() {
        let guard = Guard::default();
        // A rebinding name: public at the first lookup, loopback at the next.
        let rebinding = Scripted::new(vec![vec![ip("93.184.215.14")], vec![ip("127.0.0.1")]]);
        let target =
            block_on(guard.resolve(&rebinding, "https://rebind.example/hook")).expect("public");
        assert_eq!(*rebinding.lookups.lock().expect("lock"), 1);
        assert_eq!(
            target.addrs,
            vec![SocketAddr::new(ip("93.184.215.14"), 443)]
        );
        assert_eq!(target.host, "rebind.example");
        // The other order: loopback first is refused, whatever a later lookup would say.
        let rebinding = Scripted::new(vec![vec![ip("127.0.0.1")], vec![ip("93.184.215.14")]]);
        assert!(block_on(guard.resolve(&rebinding, "https://rebind.example/")).is_err());
        assert_eq!(*rebinding.lookups.lock().expect("lock"), 1);
    }

    #[test]
    fn the_allow_list_lets_through_what_it_contains_only() {
        let guard = Guard::new(vec!["127.0.0.1/32".parse().expect("cidr")]);
        let resolver = Scripted::new(vec![vec![ip("127.0.0.1")]]);
        block_on(guard.resolve(&resolver, "http://127.0.0.1:9000/")).expect("allowed");
        block_on(guard.resolve(&resolver, "http://localhost:9000/")).expect("allowed by name");
        block_on(guard.resolve(&resolver, "http://[::ffff:127.0.0.1]:9000/"))
            .expect("the same address");
        assert!(block_on(guard.resolve(&resolver, "http://127.0.0.2/")).is_err());
        assert!(block_on(guard.resolve(&resolver, "http://[::1]/")).is_err());
        assert!(block_on(guard.resolve(&resolver, "http://169.254.169.254/")).is_err());
    }

    #[test]
    fn bad_urls_are_refused_by_syntax() {
        for (url, what) in [
            ("ftp://example.com/", "only http"),
            ("file:///etc/passwd", "only http"),
            ("http://user:pw@example.com/", "credentials"),
            ("http://user@example.com/", "credentials"),
            ("not a url", "not a URL"),
            ("http://", "not a URL"),
        ] {
            let refused = check_url(url).expect_err(url);
            assert!(refused.contains(what), "{url}: {refused}");
        }
        check_url("https://hooks.example.com:8443/path?q=1").expect("fine");
    }
}
