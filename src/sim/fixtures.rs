//! Deterministic per-user fixtures: the mailbox each user starts with (derived from the seed and
//! the identifier, with at least one unread message), the connections the simulated Scalekit
//! environment offers, and the 2–3 sentence summary the scripted agent writes.
//!
//! Pure functions only: no state, no I/O.

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use super::ids::{self, Rng};

/// One email in a simulated mailbox (also the control API's mailbox wire shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Mail {
    pub(crate) id: String,
    pub(crate) from: String,
    pub(crate) subject: String,
    #[serde(default)]
    pub(crate) body: String,
    #[serde(default)]
    pub(crate) unread: bool,
    /// RFC 3339.
    pub(crate) received_at: String,
}

/// A connection of the simulated Scalekit environment.
#[derive(Debug)]
pub(crate) struct Connection {
    pub(crate) name: &'static str,
    pub(crate) id: &'static str,
    pub(crate) provider: &'static str,
    pub(crate) tools: &'static [&'static str],
}

/// The connections the simulated environment has, with the tools each one offers.
pub(crate) const CONNECTIONS: [Connection; 2] = [
    Connection {
        name: "gmail",
        id: "conn_69102638374305841",
        provider: "GMAIL",
        tools: &["gmail_fetch_mails", "gmail_get_message_by_id", "gmail_send_email"],
    },
    Connection {
        name: "googlecalendar",
        id: "conn_69102638374305842",
        provider: "GOOGLE_CALENDAR",
        tools: &[
            "googlecalendar_list_calendars",
            "googlecalendar_list_events",
            "googlecalendar_get_event_by_id",
            "googlecalendar_create_event",
            "googlecalendar_update_event",
            "googlecalendar_delete_event",
        ],
    },
];

/// The connection named `name` (exact key_id match).
pub(crate) fn connection(name: &str) -> Option<&'static Connection> {
    CONNECTIONS.iter().find(|connection| connection.name == name)
}

const SENDERS: [&str; 8] = [
    "Priya Raman <priya.raman@northwind.example>",
    "Tom Becker <tom.becker@contoso.example>",
    "Ana Souza <ana.souza@fabrikam.example>",
    "Kenji Sato <kenji.sato@adatum.example>",
    "Lea Martin <lea.martin@tailspin.example>",
    "Omar Haddad <omar.haddad@litware.example>",
    "Grace Kim <grace.kim@proseware.example>",
    "Jonas Berg <jonas.berg@wingtip.example>",
];

const TOPICS: [(&str, &str, &str); 8] = [
    (
        "Q3 budget review",
        "The finance team needs your sign-off on the Q3 budget by Thursday.",
        "Please review the attached spreadsheet and flag any line items you disagree with.",
    ),
    (
        "Contract renewal for Northwind",
        "The Northwind contract expires at the end of the month.",
        "Legal asks whether we renew for one year or renegotiate the terms first.",
    ),
    (
        "Incident postmortem draft",
        "The draft postmortem for last week's outage is ready for comments.",
        "Please add your timeline notes before the review meeting on Friday.",
    ),
    (
        "Hiring panel next week",
        "You are on the interview panel for the senior engineer role.",
        "Please confirm your availability for Tuesday afternoon.",
    ),
    (
        "Customer escalation: Fabrikam",
        "Fabrikam reports failed exports since the last release.",
        "Support needs an owner and an estimate today.",
    ),
    (
        "Offsite planning",
        "We are choosing dates for the team offsite in the spring.",
        "Vote for your preferred week in the poll by Wednesday.",
    ),
    (
        "Security review findings",
        "The security review found two medium-risk issues in the login flow.",
        "Each needs a remediation plan before the audit.",
    ),
    (
        "Invoice 4471 overdue",
        "Invoice 4471 from Contoso is thirty days overdue.",
        "Accounts payable asks you to approve the payment or dispute it.",
    ),
];

/// The mailbox a user starts with: 3–6 messages, newest first, at least one unread.
pub(crate) fn mailbox(seed: u64, identifier: &str) -> Vec<Mail> {
    let mut rng = Rng::new(ids::stable_hash(seed, identifier));
    let count = 3 + rng.below(4);
    let newest = base_time() - Duration::minutes(rng.below(600) as i64);
    let must_be_unread = rng.below(count);
    (0..count)
        .map(|index| {
            let (subject, first, second) = TOPICS[rng.below(TOPICS.len() as u64) as usize];
            let received = newest
                - Duration::hours(index as i64 * 5)
                - Duration::minutes(rng.below(50) as i64);
            Mail {
                id: format!("msg_{:016x}", rng.next_u64()),
                from: SENDERS[rng.below(SENDERS.len() as u64) as usize].to_owned(),
                subject: subject.to_owned(),
                body: format!("Hi,\n\n{first} {second}\n\nThanks."),
                unread: index == must_be_unread || rng.below(2) == 0,
                received_at: ids::rfc3339_secs(received),
            }
        })
        .collect()
}

fn base_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 5, 8, 0, 0).single().unwrap_or_default()
}

/// The most recent unread message, by `received_at`.
#[cfg(test)]
pub(crate) fn most_recent_unread(mails: &[Mail]) -> Option<&Mail> {
    mails.iter().filter(|mail| mail.unread).max_by(|a, b| received(a).cmp(&received(b)))
}

/// When `mail` arrived (the epoch if its timestamp does not parse).
pub(crate) fn received(mail: &Mail) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(&mail.received_at)
        .map(|at| at.with_timezone(&Utc))
        .unwrap_or_default()
}

/// The agent's deterministic 2–3 sentence summary of `mail`.
pub(crate) fn summarize(mail: &Mail) -> String {
    let sender = mail
        .from
        .split('<')
        .next()
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .unwrap_or(&mail.from);
    let mut sentences = vec![format!("{sender} emailed you about \"{}\".", mail.subject)];
    sentences.extend(body_sentences(&mail.body).into_iter().take(2));
    if sentences.len() == 1 {
        sentences.push("The message has no further details.".to_owned());
    }
    sentences.join(" ")
}

/// The body's sentences, skipping greetings and sign-offs.
fn body_sentences(body: &str) -> Vec<String> {
    let mut sentences = Vec::new();
    let mut current = String::new();
    for ch in body.chars() {
        current.push(if ch == '\n' { ' ' } else { ch });
        if matches!(ch, '.' | '!' | '?') {
            push_sentence(&mut sentences, &current);
            current.clear();
        }
    }
    push_sentence(&mut sentences, &current);
    sentences
}

fn push_sentence(sentences: &mut Vec<String>, text: &str) {
    let text = text.trim().trim_start_matches("Hi,").trim_start_matches("Hello,").trim();
    let words = text.split_whitespace().count();
    if words >= 3 {
        let mut sentence = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if !sentence.ends_with(['.', '!', '?']) {
            sentence.push('.');
        }
        sentences.push(sentence);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mailboxes_are_deterministic_and_have_unread_mail() {
        for user in ["alice@example.com", "bob@example.com", "u1", "u2", "u3"] {
            let mails = mailbox(42, user);
            assert_eq!(mails, mailbox(42, user));
            assert!((3..=6).contains(&mails.len()));
            assert!(most_recent_unread(&mails).is_some());
        }
        assert_ne!(mailbox(1, "alice"), mailbox(2, "alice"));
    }

    #[test]
    fn summary_has_two_or_three_sentences() {
        let mail = &mailbox(1, "alice@example.com")[0];
        let summary = summarize(mail);
        let n = summary.matches(['.', '!', '?']).count();
        assert!((2..=4).contains(&n), "{summary}");
        assert!(summary.contains(&mail.subject));
        let empty = Mail { body: String::new(), ..mail.clone() };
        assert!(summarize(&empty).ends_with("no further details."));
    }
}
