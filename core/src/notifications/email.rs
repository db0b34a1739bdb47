//! Email through the server's SMTP relay (lettre on tokio, rustls).
//!
//! One message per (event, channel), to all the channel's recipients, subject
//! `[berth] <type> <object>` (after the channel's prefix, if any), a plain text body
//! that says what happened and carries the event as JSON. An SMTP answer in the 4xx
//! range, a refused connection or a timeout is retried like a webhook's 5xx; a 5xx
//! answer is permanent. The password is never logged: errors are lettre's, which do not
//! carry it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::notifications::webhook::{Attempt, Verdict};
use crate::notifications::{SmtpSettings, SmtpTls};

/// An SMTP connection pool to the configured relay.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    /// A mailer for `settings`; `Err` says which setting is wrong.
    pub fn new(settings: &SmtpSettings, timeout: Duration) -> Result<Mailer, String> {
        let from: Mailbox = settings
            .from
            .parse()
            .map_err(|e| format!("smtp_from: {:?} is not an address ({e})", settings.from))?;
        let host = settings.host.as_str();
        let tls =
            |host: &str| TlsParameters::new(host.to_owned()).map_err(|e| format!("smtp_tls: {e}"));
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(settings.port)
            .timeout(Some(timeout));
        builder = match settings.tls {
            SmtpTls::None => builder.tls(Tls::None),
            SmtpTls::Starttls => builder.tls(Tls::Required(tls(host)?)),
            SmtpTls::Tls => builder.tls(Tls::Wrapper(tls(host)?)),
        };
        if let Some(user) = &settings.username {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                settings.password.clone().unwrap_or_default(),
            ));
        }
        Ok(Mailer {
            transport: builder.build(),
            from,
        })
    }

    /// Sends one message; the answer is logged like a webhook attempt.
    pub async fn send(&self, recipients: &[String], subject: &str, text: String) -> Attempt {
        let started = Instant::now();
        let mut logged = BTreeMap::new();
        logged.insert("from".to_owned(), self.from.to_string());
        logged.insert("to".to_owned(), recipients.join(", "));
        logged.insert("subject".to_owned(), subject.to_owned());
        let fail = |error: String, verdict: Verdict, logged: BTreeMap<String, String>| Attempt {
            status: 0,
            error,
            latency: started.elapsed(),
            response: String::new(),
            headers: logged,
            verdict,
        };
        let mut message = Message::builder().from(self.from.clone()).subject(subject);
        for r in recipients {
            match r.parse::<Mailbox>() {
                Ok(to) => message = message.to(to),
                Err(e) => {
                    return fail(format!("recipient {r:?}: {e}"), Verdict::Permanent, logged);
                }
            }
        }
        let message = match message.header(ContentType::TEXT_PLAIN).body(text) {
            Ok(message) => message,
            Err(e) => {
                return fail(
                    format!("cannot build the message: {e}"),
                    Verdict::Permanent,
                    logged,
                );
            }
        };
        match self.transport.send(message).await {
            Ok(response) => Attempt {
                status: 0,
                error: String::new(),
                latency: started.elapsed(),
                response: format!(
                    "{} {}",
                    response.code(),
                    response.message().collect::<Vec<_>>().join(" ")
                ),
                headers: logged,
                verdict: Verdict::Delivered,
            },
            Err(e) => {
                let verdict = if e.is_permanent() {
                    Verdict::Permanent
                } else {
                    Verdict::Retry { after: None }
                };
                fail(format!("SMTP: {e}"), verdict, logged)
            }
        }
    }
}

/// The subject of an event's message: `[berth] <type> <object>`, after `prefix`.
pub fn subject(prefix: &str, event_type: &str, object: &str) -> String {
    let core = format!("[berth] {event_type} {object}");
    if prefix.is_empty() {
        core
    } else {
        format!("{prefix} {core}")
    }
}

/// The text of an event's message: what happened, then the event as JSON.
pub fn text(event_type: &str, object: &str, workspace: &str, body: &str) -> String {
    let pretty = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| body.to_owned());
    format!(
        "Berth: {event_type} for {object} in workspace {workspace}.\n\nThe event:\n\n{pretty}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_name_the_type_and_object() {
        assert_eq!(
            subject("", "work_request.failed", "0193"),
            "[berth] work_request.failed 0193"
        );
        assert_eq!(
            subject("[ci]", "work_request.failed", "0193"),
            "[ci] [berth] work_request.failed 0193"
        );
    }

    #[test]
    fn a_bad_from_address_is_named() {
        let settings = SmtpSettings {
            host: "127.0.0.1".into(),
            port: 25,
            from: "not an address".into(),
            tls: SmtpTls::None,
            username: None,
            password: None,
        };
        let error = Mailer::new(&settings, Duration::from_secs(1))
            .err()
            .expect("refused");
        assert!(error.starts_with("smtp_from:"), "{error}");
    }
}
