//! `herald meeting` against a running Herald: an invitation arrives by
//! email with an `.ics` that a standard iCalendar parser reads, in the
//! attendee's time zone and language; a clash with the organiser's other
//! meeting is refused; the signed links accept and decline; the reminder
//! goes only to those who did not decline; a reschedule bumps SEQUENCE and
//! a cancellation sends METHOD:CANCEL; an interpreter is found and invited;
//! a calendar program's iMIP REPLY by email answers for its sender.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use herald_testkit::{
    TestSystem,
    cases::{client, fast_policies, staff},
    cli::{Cli, stderr, stdout},
    smtp::Mail,
};

/// The base the answer links are made with; the test sends them to the
/// escalation service's real port instead.
const PUBLIC: &str = "http://127.0.0.1:1/esc";

const CLIENT: &str = "client-0@clients.example.org";
/// The inbound-email webhook's signing key.
const MAIL_KEY: &str = "inbound-mail-key-meetings";
const KIM: &str = "kim@staff.example.org";

/// One property: its name, its parameters and its value.
type Prop = (String, Vec<(String, String)>, String);

/// The VEVENT of an attachment as a standard parser reads it: the
/// calendar's METHOD, and each property of the event as (name, params, value).
struct Parsed {
    method: String,
    event: Vec<Prop>,
}

impl Parsed {
    fn of(mail: &Mail, filename: &str) -> Parsed {
        let part = mail
            .attachment(filename)
            .unwrap_or_else(|| panic!("no {filename} in {}", mail.data));
        assert!(
            part.content_type.starts_with("text/calendar"),
            "{}",
            part.content_type
        );
        let text = String::from_utf8(part.body).unwrap_or_else(|e| panic!("{e}"));
        let unfolded = icalendar::parser::unfold(&text);
        let cal = icalendar::parser::read_calendar(&unfolded)
            .unwrap_or_else(|e| panic!("not iCalendar: {e}\n{text}"));
        let method = cal
            .properties
            .iter()
            .find(|p| p.name.as_str() == "METHOD")
            .map(|p| p.val.as_str().to_string())
            .unwrap_or_default();
        let event = cal
            .components
            .iter()
            .find(|c| c.name.as_str() == "VEVENT")
            .unwrap_or_else(|| panic!("no VEVENT in {text}"))
            .properties
            .iter()
            .map(|p| {
                (
                    p.name.as_str().to_string(),
                    p.params
                        .iter()
                        .map(|a| {
                            (
                                a.key.as_str().to_string(),
                                a.val
                                    .as_ref()
                                    .map(|v| v.as_str().to_string())
                                    .unwrap_or_default(),
                            )
                        })
                        .collect(),
                    p.val.as_str().to_string(),
                )
            })
            .collect();
        assert!(
            content_type_method(&part.content_type) == method,
            "{} against METHOD:{method}",
            part.content_type
        );
        Parsed { method, event }
    }

    fn value(&self, name: &str) -> String {
        self.event
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, _, v)| v.clone())
            .unwrap_or_else(|| panic!("no {name}"))
    }

    fn param(&self, name: &str, param: &str) -> String {
        self.event
            .iter()
            .find(|(n, _, _)| n == name)
            .and_then(|(_, ps, _)| ps.iter().find(|(k, _)| k == param))
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {name};{param}"))
    }
}

fn content_type_method(ct: &str) -> String {
    ct.split(';')
        .filter_map(|p| p.trim().strip_prefix("method="))
        .next()
        .unwrap_or_default()
        .to_string()
}

fn link_after(body: &str, label: &str) -> String {
    let at = body
        .find(label)
        .unwrap_or_else(|| panic!("no {label:?} in {body}"));
    body[at + label.len()..]
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Herald with the sla and escalation services, quick policies, answer
/// links made with [`PUBLIC`], and the staff and `others` in the directory.
async fn with_meetings(
    dir: &tempfile::TempDir,
    others: Vec<herald_directory::contacts::Contact>,
) -> TestSystem {
    let path = dir.path().to_path_buf();
    let mut sys = TestSystem::start_with(|cfg| {
        fast_policies(cfg, &path, Duration::from_secs(3600));
        cfg.escalation.public_url = PUBLIC.into();
        cfg.delivery.inbound_email_signing_key = Some(MAIL_KEY.into());
    })
    .await;
    let mut people = staff();
    people.extend(others);
    sys.add_contacts(&people).await;
    sys.start_sla().await;
    sys.start_escalation().await;
    sys
}

/// Opens `case` for client-0, handled by fl-sam in the support team.
fn open_case(herald: &Cli, case: &str) {
    let open = herald.run(&[
        "case",
        "open",
        case,
        "--client",
        "client-0",
        "--channel",
        "support_ticket",
        "--team",
        "support",
        "--staff",
        "fl-sam",
    ]);
    assert!(open.status.success(), "{}", stderr(&open));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meeting_is_invited_answered_reminded_moved_and_cancelled_and_a_clash_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut paris = client(0);
    paris.time_zone = "Europe/Paris".into();
    paris.language = "fr".into();
    let sys = with_meetings(&dir, vec![paris]).await;
    let herald = Cli::new(env!("CARGO_BIN_EXE_herald"), &sys);
    open_case(&herald, "CASE-M");

    // Starts in 25 s (whole seconds, as the file says them); the 15 s
    // reminder comes 10 s from now.
    let now = Utc::now();
    let start = DateTime::from_timestamp(now.timestamp() + 25, 0).unwrap();
    let at = start.to_rfc3339();
    let schedule = |id: &str, at: &str| {
        herald.run(&[
            "meeting",
            "schedule",
            "CASE-M",
            "--with",
            "client-0,tl-kim",
            "--title",
            "Support plan review",
            "--by",
            "fl-sam",
            "--at",
            at,
            "--duration",
            "30m",
            "--location",
            "Room 4, first floor",
            "--id",
            id,
        ])
    };
    let bad = herald.run(&[
        "meeting",
        "schedule",
        "CASE-M",
        "--with",
        "nobody",
        "--title",
        "x",
        "--by",
        "fl-sam",
        "--at",
        &at,
        "--duration",
        "30m",
    ]);
    assert_eq!(bad.status.code(), Some(3), "{}", stderr(&bad));
    assert!(
        stderr(&bad).contains("meeting.attendees[0]"),
        "{}",
        stderr(&bad)
    );
    let made = schedule("mtg-1", &at);
    assert!(made.status.success(), "{}", stderr(&made));
    assert!(
        stdout(&made).contains("meeting scheduled"),
        "{}",
        stdout(&made)
    );

    // The same organiser cannot be in two meetings at once.
    let overlapping = (start + TimeDelta::minutes(15)).to_rfc3339();
    let clash = schedule("mtg-2", &overlapping);
    assert_eq!(clash.status.code(), Some(3), "{}", stderr(&clash));
    assert!(
        stderr(&clash).contains("meeting.at") && stderr(&clash).contains("mtg-1"),
        "{}",
        stderr(&clash)
    );

    // The client's invitation: in French, the time in Paris, an .ics a
    // standard parser reads, with the meeting in their zone.
    let invite = sys
        .smtp
        .wait_for_mail_to(CLIENT, "Support plan review", Duration::from_secs(20))
        .await;
    let body = invite.body();
    assert!(body.contains("vous invite"), "{body}");
    let paris_time = start
        .with_timezone(&chrono_tz::Europe::Paris)
        .format("%H:%M")
        .to_string();
    assert!(body.contains(&paris_time), "{paris_time} in {body}");
    let ics = Parsed::of(&invite, "invite.ics");
    assert_eq!(ics.method, "REQUEST");
    assert_eq!(ics.value("SEQUENCE"), "0");
    let uid = ics.value("UID");
    assert_eq!(ics.param("DTSTART", "TZID"), "Europe/Paris");
    assert_eq!(
        ics.value("DTSTART"),
        start
            .with_timezone(&chrono_tz::Europe::Paris)
            .format("%Y%m%dT%H%M%S")
            .to_string()
    );
    assert_eq!(
        ics.value("LOCATION"),
        "Room 4, first floor",
        "unescaped by the parser"
    );
    assert_eq!(ics.param("ATTENDEE", "PARTSTAT"), "NEEDS-ACTION");
    assert!(ics.value("ORGANIZER").contains("sam@staff.example.org"));

    // Kim declines, the client accepts, each by their own link.
    let kims = sys
        .smtp
        .wait_for_mail_to(KIM, "Support plan review", Duration::from_secs(20))
        .await;
    let local =
        |link: String| link.replace(PUBLIC, &format!("http://{}", sys.http_addr("escalation")));
    let decline = local(link_after(&kims.body(), "Decline: "));
    let accept = local(link_after(&body, "Accepter : "));
    let http = reqwest::Client::new();
    let forged = http
        .post(decline.replace("c=tl-kim", "c=client-0"))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    let page = http.get(&decline).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("<form method=\"post\">")
    );
    for link in [&decline, &accept] {
        let answered = http.post(link).send().await.unwrap();
        assert_eq!(answered.status(), 200, "{}", answered.text().await.unwrap());
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let list = stdout(&herald.run(&["meeting", "list", "CASE-M"]));
        if list.contains("client-0: accepted") && list.contains("tl-kim: declined") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "answers not kept: {list}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The reminder reaches the client, who accepted, and not Kim, who
    // declined.
    let reminder = sys
        .smtp
        .wait_for_mail_to(CLIENT, "Rappel", Duration::from_secs(20))
        .await;
    assert!(reminder.body().contains("Room 4"), "{}", reminder.body());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        sys.smtp.mails_to(KIM, "Reminder").is_empty(),
        "someone who declined was reminded"
    );

    // Moved: the same UID, SEQUENCE 1, everyone asked again.
    let later = (start + TimeDelta::hours(2)).to_rfc3339();
    let moved = herald.run(&["meeting", "reschedule", "CASE-M", "mtg-1", "--at", &later]);
    assert!(moved.status.success(), "{}", stderr(&moved));
    let update = sys
        .smtp
        .wait_for_mail_to(CLIENT, "Modifié", Duration::from_secs(20))
        .await;
    let ics = Parsed::of(&update, "invite.ics");
    assert_eq!(
        (ics.method.as_str(), ics.value("SEQUENCE").as_str()),
        ("REQUEST", "1")
    );
    assert_eq!(ics.value("UID"), uid);
    // The slot it left is free again.
    let freed = schedule("mtg-3", &at);
    assert!(freed.status.success(), "{}", stderr(&freed));

    // Cancelled: METHOD:CANCEL, STATUS:CANCELLED, SEQUENCE 2.
    let off = herald.run(&[
        "meeting",
        "cancel",
        "CASE-M",
        "mtg-1",
        "--reason",
        "no longer needed",
    ]);
    assert!(off.status.success(), "{}", stderr(&off));
    let cancel = sys
        .smtp
        .wait_for_mail_to(KIM, "Cancelled", Duration::from_secs(20))
        .await;
    let ics = Parsed::of(&cancel, "cancel.ics");
    assert_eq!(ics.method, "CANCEL");
    assert_eq!(ics.value("STATUS"), "CANCELLED");
    assert_eq!(ics.value("SEQUENCE"), "2");
    assert_eq!(ics.value("UID"), uid);
    let again = herald.run(&["meeting", "reschedule", "CASE-M", "mtg-1", "--at", &later]);
    assert_eq!(again.status.code(), Some(3), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("meeting.meeting_id"),
        "{}",
        stderr(&again)
    );

    // Everything is in the case's trail.
    let trail = stdout(&herald.run(&["trail", "CASE-M", "--case"]));
    for said in [
        "meeting mtg-1 scheduled by fl-sam",
        "meeting mtg-1: tl-kim declined",
        "meeting mtg-1: client-0 accepted",
        "meeting mtg-1: reminder sent to client-0, 15s before it starts",
        "meeting mtg-1 rescheduled",
        "meeting mtg-1 cancelled",
        "meeting mtg-1: cancellation sent to tl-kim",
    ] {
        assert!(trail.contains(said), "{said:?} not in\n{trail}");
    }
}

/// An interpreter between English and French, as the directory keeps one.
fn interpreter(id: &str) -> herald_directory::contacts::Contact {
    let mut c = client(0);
    c.id = id.into();
    c.name = id.into();
    c.email = Some(format!("{id}@interpreters.example.org"));
    c.phone = None;
    c.role = Some("interpreter".into());
    c.interprets = vec!["fr".into(), "en".into()];
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meeting_in_two_languages_gets_a_free_interpreter_who_is_invited_and_answers() {
    let dir = tempfile::tempdir().unwrap();
    let mut french = client(0);
    french.language = "fr".into();
    let people = vec![french, interpreter("int-marie"), interpreter("int-paul")];
    let sys = with_meetings(&dir, people).await;
    let herald = Cli::new(env!("CARGO_BIN_EXE_herald"), &sys);
    open_case(&herald, "CASE-I");
    let at = (Utc::now() + TimeDelta::days(2)).to_rfc3339();
    let schedule = |id: &str, by: &str, with: &str| {
        herald.run(&[
            "meeting",
            "schedule",
            "CASE-I",
            "--with",
            with,
            "--title",
            "Plan review",
            "--by",
            by,
            "--at",
            &at,
            "--duration",
            "1h",
            "--video-link",
            "https://meet.example.org/plan",
            "--interpreter",
            "--id",
            id,
        ])
    };

    // An English-speaking organiser and a French-speaking client: the
    // first interpreter between the two is invited.
    let first = schedule("mtg-a", "fl-sam", "client-0");
    assert!(first.status.success(), "{}", stderr(&first));
    let invite = sys
        .smtp
        .wait_for_mail_to(
            "int-marie@interpreters.example.org",
            "Plan review",
            Duration::from_secs(20),
        )
        .await;
    assert!(
        invite.body().contains("invited as the interpreter"),
        "{}",
        invite.body()
    );
    let ics = Parsed::of(&invite, "invite.ics");
    assert_eq!(ics.method, "REQUEST");
    assert!(ics.value("DESCRIPTION").starts_with("Interpreting: "));
    let client_mail = sys
        .smtp
        .wait_for_mail_to(CLIENT, "Plan review", Duration::from_secs(20))
        .await;
    assert!(
        !client_mail.body().contains("interprète"),
        "the client is not told they interpret: {}",
        client_mail.body()
    );

    // At the same time, with another organiser, Marie is busy: Paul comes.
    let second = schedule("mtg-b", "tl-kim", "client-0");
    assert!(second.status.success(), "{}", stderr(&second));
    sys.smtp
        .wait_for_mail_to(
            "int-paul@interpreters.example.org",
            "Plan review",
            Duration::from_secs(20),
        )
        .await;
    // A third at that time finds no one free, and says so.
    let third = schedule("mtg-c", "tl-other", "client-0");
    assert_eq!(third.status.code(), Some(3), "{}", stderr(&third));
    assert!(
        stderr(&third).contains("meeting.interpreter")
            && stderr(&third).contains("another meeting"),
        "{}",
        stderr(&third)
    );
    // Among English speakers no interpreter is needed.
    let same = schedule("mtg-d", "tl-other", "tl-kim");
    assert_eq!(same.status.code(), Some(3), "{}", stderr(&same));
    assert!(
        stderr(&same).contains("no interpreter is needed"),
        "{}",
        stderr(&same)
    );

    // Marie accepts by her own link, as any attendee does.
    let accept = link_after(&invite.body(), "Accept: ")
        .replace(PUBLIC, &format!("http://{}", sys.http_addr("escalation")));
    let answered = reqwest::Client::new().post(&accept).send().await.unwrap();
    assert_eq!(answered.status(), 200, "{}", answered.text().await.unwrap());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let list = stdout(&herald.run(&["meeting", "list", "CASE-I"]));
        if list.contains("int-marie (interpreter): accepted") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the interpreter's answer not kept: {list}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let trail = stdout(&herald.run(&["trail", "CASE-I", "--case"]));
    for said in [
        "meeting mtg-a scheduled by fl-sam with client-0; interpreting: int-marie",
        "meeting mtg-b scheduled by tl-kim with client-0; interpreting: int-paul",
        "meeting mtg-a: int-marie accepted",
    ] {
        assert!(trail.contains(said), "{said:?} not in\n{trail}");
    }
}

/// A calendar program's answer to an invitation, as iMIP sends it.
fn calendar_reply(uid: &str, sequence: &str, attendee: &str, partstat: &str) -> String {
    [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//Example Corp.//Calendar 1.0//EN",
        "METHOD:REPLY",
        "BEGIN:VEVENT",
        &format!("UID:{uid}"),
        &format!("SEQUENCE:{sequence}"),
        "DTSTAMP:20261204T120000Z",
        &format!("ATTENDEE;PARTSTAT={partstat}:mailto:{attendee}"),
        "END:VEVENT",
        "END:VCALENDAR",
        "",
    ]
    .join("\r\n")
}

/// Posts an email from `from` carrying `ics` as an attachment to
/// delivery's inbound-email webhook, as a mail service's inbound parse
/// does (multipart, signed): its status.
async fn mail_in_with_calendar(sys: &TestSystem, from: &str, token: &str, ics: &str) -> u16 {
    let timestamp = Utc::now().timestamp().to_string();
    let signature = herald_content::mailhook::sign(MAIL_KEY, &timestamp, token);
    let boundary = "herald-test-boundary";
    let mut body = String::new();
    for (name, value) in [
        ("from", from),
        ("recipient", "replies@herald.example.org"),
        ("subject", "Accepted: Plan review"),
        ("body-plain", "Kim has answered."),
        ("Message-Id", &format!("<{token}@calendar.example.org>")),
        ("timestamp", &timestamp),
        ("token", token),
        ("signature", &signature),
    ] {
        body.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        ));
    }
    body.push_str(&format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"attachment-1\"; filename=\"invite.ics\"\r\nContent-Type: text/calendar; method=REPLY\r\n\r\n{ics}\r\n--{boundary}--\r\n"
    ));
    reqwest::Client::new()
        .post(format!(
            "http://{}/v1/inbound/email",
            sys.http_addr("delivery")
        ))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_calendar_reply_by_email_answers_for_its_sender_and_only_for_the_invitation_standing() {
    let dir = tempfile::tempdir().unwrap();
    let sys = with_meetings(&dir, vec![client(0)]).await;
    let herald = Cli::new(env!("CARGO_BIN_EXE_herald"), &sys);
    open_case(&herald, "CASE-R");
    let at = (Utc::now() + TimeDelta::days(3)).to_rfc3339();
    let made = herald.run(&[
        "meeting",
        "schedule",
        "CASE-R",
        "--with",
        "client-0,tl-kim",
        "--title",
        "Plan review",
        "--by",
        "fl-sam",
        "--at",
        &at,
        "--duration",
        "30m",
        "--id",
        "mtg-r",
    ]);
    assert!(made.status.success(), "{}", stderr(&made));
    let invite = sys
        .smtp
        .wait_for_mail_to(KIM, "Plan review", Duration::from_secs(20))
        .await;
    let uid = Parsed::of(&invite, "invite.ics").value("UID");
    let list = || stdout(&herald.run(&["meeting", "list", "CASE-R"]));

    // Someone else's address cannot answer for Kim, nor can an answer to
    // an invitation that is not the one standing.
    let trail = || stdout(&herald.run(&["trail", "CASE-R", "--case"]));
    let accepted = calendar_reply(&uid, "0", KIM, "ACCEPTED");
    assert_eq!(
        mail_in_with_calendar(&sys, CLIENT, "tok-forged", &accepted).await,
        200
    );
    let stale = calendar_reply(&uid, "7", KIM, "ACCEPTED");
    assert_eq!(
        mail_in_with_calendar(&sys, KIM, "tok-stale", &stale).await,
        200
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !trail().contains("a calendar reply from tl-kim was not counted") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stale answer is not noted: {}",
            trail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Kim's calendar declines the invitation she has.
    let declined = calendar_reply(&uid, "0", KIM, "DECLINED");
    assert_eq!(
        mail_in_with_calendar(&sys, KIM, "tok-kim", &declined).await,
        200
    );
    while !list().contains("tl-kim: declined") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the calendar's answer not kept: {}",
            list()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(list().contains("client-0: needs-action"), "{}", list());
    let trail = trail();
    assert!(trail.contains("meeting mtg-r: tl-kim declined"), "{trail}");
    assert!(
        !trail.contains("tl-kim accepted"),
        "a forged or stale answer counted: {trail}"
    );
    // The reply was an answer, not a message to the case: nobody was told
    // of a client reply.
    assert!(
        !trail.contains("Kim has answered"),
        "the reply's words reached the trail: {trail}"
    );
}
