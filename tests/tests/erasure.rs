//! Erasing a person (SOP 003 §6.5), end to end over real NATS, Redis, SMTP
//! and HTTP: a client gets an email and an SMS, has a case opened about
//! them and texts back; then the Data Protection Officer erases them (what
//! `herald contacts erase` asks). Every message of every stream and every Redis key and
//! value is then read raw, and none holds the client's id, name, email or
//! number, while another client's data is all still there; the trail has
//! the erasure's record, naming nobody. A service that is down makes the
//! erasure incomplete, said so and finished by asking again; a repeat
//! removes nothing; nobody but the DPO may erase.

use std::time::Duration;

use async_nats::jetstream::{self, stream::LastRawMessageErrorKind};
use herald_directory::contacts::Contact;
use herald_proto::{
    Message, subjects,
    v1::{
        AuditBatch, AuditRecord, AuditStep, CaseChannel, Channel, EraseContact, EraseReply,
        ErasureReport, ErrorCode, NotificationRequest, Priority, Rejected, erase_reply,
    },
};
use herald_testkit::{
    TestSystem,
    cases::{fast_policies, opened, staff},
    fixtures::{contact, inquiry},
};

const WAIT: Duration = Duration::from_secs(20);
const PROVIDER_TOKEN: &str = "provider-token-for-erasure-01";
const DELIVERY_URL: &str = "https://herald.test/dl";

/// Someone Herald knows, and every form their details take on the wire.
struct Who {
    id: &'static str,
    name: &'static str,
    email: &'static str,
    phone: &'static str,
    /// The case they are the client of, which goes with them.
    case: &'static str,
}

const RIA: Who = Who {
    id: "ria-0451",
    name: "Ria Lopez",
    email: "ria.lopez@clients.example.org",
    phone: "+447700900451",
    case: "CASE-RIA",
};

const TOM: Who = Who {
    id: "tom-0452",
    name: "Tom Hale",
    email: "tom.hale@clients.example.org",
    phone: "+447700900452",
    case: "CASE-TOM",
};

impl Who {
    fn contact(&self) -> Contact {
        let mut c = contact(self.id, Some(self.email), Some(self.phone), "email");
        c.name = self.name.into();
        c
    }

    /// What must not be left of them: the id, the name, the address and
    /// the number (also as its digits, the way reply indexes keep it), and
    /// their case.
    fn traces(&self) -> Vec<String> {
        vec![
            self.case.into(),
            self.id.into(),
            self.name.into(),
            self.email.into(),
            self.phone.into(),
            self.phone.trim_start_matches('+').into(),
        ]
    }

    /// Which of their traces `bytes` holds, case-insensitively.
    fn found_in(&self, bytes: &[u8]) -> Vec<String> {
        let hay = String::from_utf8_lossy(bytes).to_ascii_lowercase();
        self.traces()
            .into_iter()
            .filter(|t| hay.contains(&t.to_ascii_lowercase()))
            .collect()
    }
}

/// Herald with every service, its delivery public base a deployment's (so
/// SMS replies are believed), the staff and both clients.
async fn system() -> (TestSystem, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("policy dir");
    let path = dir.path().to_path_buf();
    let mut sys = TestSystem::start_with(|c| {
        fast_policies(c, &path, Duration::from_secs(600));
        c.delivery.provider_account = Some("AC-test".into());
        c.delivery.provider_token = Some(PROVIDER_TOKEN.into());
        c.delivery.status_callback_base = Some(DELIVERY_URL.into());
        c.retention.erasure_hash_key = Some("erasure-hash-key-for-tests".into());
    })
    .await;
    let mut people = staff();
    people.extend([RIA.contact(), TOM.contact()]);
    sys.add_contacts(&people).await;
    sys.start_sla().await;
    sys.start_escalation().await;
    sys.start_broadcast().await;
    (sys, dir)
}

/// An email and an SMS about `case` to `who`.
fn about_case(key: &str, who: &Who, case: &str) -> NotificationRequest {
    NotificationRequest {
        case_id: case.into(),
        channel_override: vec![Channel::Email as i32, Channel::Sms as i32],
        ..inquiry(key, who.id, &format!("REF-{case}"))
    }
}

/// `who` texts back, as the SMS provider's webhook posts it.
async fn text_in(sys: &TestSystem, who: &Who, body: &str, sid: &str) {
    let public = format!("{DELIVERY_URL}/v1/inbound/sms");
    let params: Vec<(String, String)> = [
        ("From", who.phone),
        ("To", "+15005550006"),
        ("Body", body),
        ("MessageSid", sid),
        ("SmsSid", sid),
        ("AccountSid", "AC-test"),
        ("NumMedia", "0"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let local = public.replace(
        DELIVERY_URL,
        &format!("http://{}", sys.http_addr("delivery")),
    );
    let r = reqwest::Client::new()
        .post(local)
        .header(
            "X-Twilio-Signature",
            herald_content::signature::sign(PROVIDER_TOKEN, &public, &params),
        )
        .form(&params)
        .send()
        .await
        .expect("delivery answers");
    assert_eq!(r.status(), 200, "the reply is stored");
}

/// What intake answers `identity` asking to erase `id` for `by`: the
/// report, a refusal, or the request not reaching intake at all.
async fn erase(
    sys: &TestSystem,
    identity: &str,
    id: &str,
    by: &str,
    reason: &str,
) -> Result<Result<ErasureReport, Rejected>, String> {
    let client = sys.nats.connect_as(identity).await;
    let req = EraseContact {
        contact_id: id.into(),
        by: by.into(),
        reason: reason.into(),
    };
    let asked = tokio::time::timeout(
        Duration::from_secs(60),
        client.request(
            subjects::from_caller(subjects::INTAKE_ERASE, identity),
            req.encode_to_vec().into(),
        ),
    )
    .await
    .map_err(|_| "no answer within 60s".to_string())?
    .map_err(|e| e.to_string())?;
    match EraseReply::decode(asked.payload)
        .expect("an EraseReply")
        .result
    {
        Some(erase_reply::Result::Erased(report)) => Ok(Ok(report)),
        Some(erase_reply::Result::Rejected(r)) => Ok(Err(r)),
        None => Err("an empty reply".into()),
    }
}

/// What a report says was removed from `store`, all services together.
fn removed(report: &ErasureReport, store: &str) -> u64 {
    report
        .parts
        .iter()
        .filter(|p| p.store == store)
        .map(|p| p.removed)
        .sum()
}

/// Every message of every stream, raw: where it is, and its subject,
/// headers and payload together.
async fn every_message(sys: &TestSystem) -> Vec<(String, Vec<u8>)> {
    let js = jetstream::new(sys.nats.admin().await);
    let mut out = Vec::new();
    for s in subjects::STREAMS {
        let mut stream = js.get_stream(s.stream).await.expect("stream");
        let state = stream.info().await.expect("stream info").state.clone();
        if state.messages == 0 {
            continue;
        }
        for seq in state.first_sequence..=state.last_sequence {
            let m = match stream.get_raw_message(seq).await {
                Ok(m) => m,
                Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => continue,
                Err(e) => panic!("reading {} #{seq}: {e}", s.stream),
            };
            let mut bytes = m.subject.as_bytes().to_vec();
            for (name, values) in m.headers.iter() {
                bytes.extend(name.to_string().as_bytes());
                for v in values {
                    bytes.extend(v.as_str().as_bytes());
                }
            }
            bytes.extend(&m.payload);
            out.push((format!("{} #{seq}", s.stream), bytes));
        }
    }
    out
}

/// Every Redis key with everything it holds, read as the administrator.
async fn every_key(sys: &TestSystem) -> Vec<(String, Vec<u8>)> {
    use redis::AsyncCommands;
    let client = redis::Client::open(sys.redis.url()).expect("redis url");
    let mut r = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let keys: Vec<String> = {
        let mut iter: redis::AsyncIter<String> = r.scan().await.expect("SCAN");
        let mut keys = Vec::new();
        while let Some(k) = iter.next_item().await {
            keys.push(k.expect("a key"));
        }
        keys
    };
    let mut out = Vec::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut r)
            .await
            .expect("TYPE");
        let mut bytes = key.as_bytes().to_vec();
        let parts: Vec<Vec<u8>> = match kind.as_str() {
            "string" => vec![r.get(&key).await.expect("GET")],
            "hash" => {
                let h: Vec<(Vec<u8>, Vec<u8>)> = r.hgetall(&key).await.expect("HGETALL");
                h.into_iter().flat_map(|(f, v)| [f, v]).collect()
            }
            "set" => r.smembers(&key).await.expect("SMEMBERS"),
            "zset" => r.zrange(&key, 0, -1).await.expect("ZRANGE"),
            "list" => r.lrange(&key, 0, -1).await.expect("LRANGE"),
            _ => Vec::new(),
        };
        for p in parts {
            bytes.push(b' ');
            bytes.extend(p);
        }
        out.push((format!("{key} ({kind})"), bytes));
    }
    out
}

/// Whether intake still remembers the kit's publisher's request `key`
/// (sent by `crm`, as `fixtures::inquiry` says).
async fn idempotency_key_kept(sys: &TestSystem, key: &str) -> bool {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("publisher\u{0}crm\u{0}{key}").as_bytes());
    let name = format!(
        "{}intake:idem:{}",
        sys.cfg.redis.prefix,
        hex::encode(&digest[..16])
    );
    every_key(sys)
        .await
        .iter()
        .any(|(k, _)| k.starts_with(&name))
}

/// Where in the streams and Redis anything of `who` is left.
async fn traces_of(sys: &TestSystem, who: &Who) -> Vec<String> {
    let mut found = Vec::new();
    for (place, bytes) in every_message(sys)
        .await
        .into_iter()
        .chain(every_key(sys).await)
    {
        let here = who.found_in(&bytes);
        if !here.is_empty() {
            found.push(format!("{place}: {here:?}"));
        }
    }
    found
}

/// That `found` (from [`traces_of`]) has someone in the trail, the case
/// and inbound streams, the directory and delivery's keys.
fn in_every_store(found: &[String], what: &str) {
    for store in [
        "HERALD_AUDIT",
        "HERALD_CASES",
        "HERALD_INBOUND",
        "herald:dir:",
        "herald:delivery:",
    ] {
        assert!(
            found.iter().any(|p| p.starts_with(store)),
            "{what}: not in {store}: {found:#?}"
        );
    }
}

/// The trail's erasure records, read raw from the audit stream.
async fn erasure_records(sys: &TestSystem) -> Vec<AuditRecord> {
    let mut out = Vec::new();
    let js = jetstream::new(sys.nats.admin().await);
    let mut stream = js.get_stream(subjects::STREAM_AUDIT).await.expect("audit");
    let state = stream.info().await.expect("info").state.clone();
    for seq in state.first_sequence..=state.last_sequence {
        if let Ok(m) = stream.get_raw_message(seq).await {
            let batch = AuditBatch::decode(m.payload).expect("an audit batch");
            out.extend(
                batch
                    .records
                    .into_iter()
                    .filter(|r| r.step == AuditStep::Erased as i32),
            );
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_person_is_gone_from_every_stream_and_key_and_the_trail_says_so() {
    let (mut sys, _dir) = system().await;

    // Ria and Tom each have a case, an email and an SMS about it, and a
    // text back; Ria also a plain email.
    for who in [&RIA, &TOM] {
        let case = who.case;
        sys.case_ok(&opened(
            case,
            who.id,
            CaseChannel::SupportTicket,
            Priority::Normal,
        ))
        .await;
        sys.notify_ok(&about_case(&format!("{case}-n"), who, case))
            .await;
        sys.smtp.wait_for_mail_to(who.email, case, WAIT).await;
    }
    sys.notify_ok(&inquiry("ria-plain", RIA.id, "REF-PLAIN"))
        .await;
    sys.smtp
        .wait_for_mail_to(RIA.email, "REF-PLAIN", WAIT)
        .await;
    sys.http.wait_for("/sms", 2, WAIT).await;
    text_in(&sys, &RIA, "Thanks, see you on the 14th", "SM-ria-1").await;
    text_in(&sys, &TOM, "Thanks, the 15th then", "SM-tom-1").await;
    sys.wait_for_case_steps("CASE-RIA", AuditStep::ReplyReceived, 1, WAIT)
        .await;
    sys.wait_for_case_steps("CASE-TOM", AuditStep::ReplyReceived, 1, WAIT)
        .await;
    sys.wait_until_idle().await;
    let before = traces_of(&sys, &RIA).await;
    in_every_store(&before, "the scan sees Ria before the erasure");

    // Only the Data Protection Officer may erase: the directory identity
    // is refused by the server itself, and nothing is touched.
    let refused = erase(&sys, "directory", RIA.id, "dana", "").await;
    assert!(refused.is_err(), "{refused:?}");
    assert!(
        traces_of(&sys, &RIA).await.len() >= before.len(),
        "a refused erasure removes nothing"
    );
    // The trail keeps `by` and the reason: neither may name the person.
    let named = erase(&sys, "dpo", RIA.id, "dana", "Ria Lopez asked").await;
    let named = named.expect("intake answers").expect_err("refused");
    assert_eq!(
        (named.code, named.field.as_str()),
        (ErrorCode::InvalidArgument as i32, "reason")
    );
    let nobody = erase(&sys, "dpo", RIA.id, " ", "").await;
    assert_eq!(nobody.expect("answers").expect_err("refused").field, "by");

    // With the escalation service down, the erasure says it is
    // incomplete and keeps the directory record for the next try.
    sys.stop("escalation").await;
    let partial = erase(&sys, "dpo", RIA.id, "dana", "")
        .await
        .expect("answers")
        .expect("carried out as far as it could");
    assert_eq!(
        partial
            .failed
            .iter()
            .map(|f| f.service.as_str())
            .collect::<Vec<_>>(),
        ["escalation"],
        "{partial:#?}"
    );
    assert_eq!(removed(&partial, "redis:dir"), 0, "{partial:#?}");
    assert!(
        removed(&partial, subjects::STREAM_AUDIT) > 0,
        "{partial:#?}"
    );
    let directory = herald_directory::contacts::Directory::new(
        herald_runtime::store::connect(&sys.cfg.redis, &tokio_util::sync::CancellationToken::new())
            .await
            .expect("redis"),
        &sys.cfg.redis.prefix,
    );
    assert!(
        directory.get(RIA.id).await.expect("directory").is_some(),
        "the record is kept for the next try"
    );
    sys.start_escalation().await;

    // Asked again, it finishes.
    let done = erase(&sys, "dpo", RIA.id, "dana", "erasure request of 2 March")
        .await
        .expect("answers")
        .expect("erased");
    assert!(done.failed.is_empty(), "{done:#?}");
    for store in ["redis:dir", "redis:escalation"] {
        assert!(removed(&done, store) > 0, "{store}: {done:#?}");
    }
    let left = traces_of(&sys, &RIA).await;
    assert!(left.is_empty(), "left of Ria: {left:#?}");
    // Her requests' idempotency keys hold only a notification id, by a
    // hash of the key: gone too.
    for key in ["CASE-RIA-n", "ria-plain"] {
        assert!(
            !idempotency_key_kept(&sys, key).await,
            "{key} is still remembered"
        );
    }
    assert!(idempotency_key_kept(&sys, "CASE-TOM-n").await);

    // Tom is all still there: his record, his messages, his trail.
    in_every_store(&traces_of(&sys, &TOM).await, "Tom is all still there");
    assert!(directory.get(TOM.id).await.expect("directory").is_some());
    let tom_trail = sys.case_trail("CASE-TOM").await;
    assert!(
        tom_trail.iter().any(|r| r.step == AuditStep::Sent as i32),
        "{tom_trail:#?}"
    );

    // A repeat removes nothing more and still succeeds.
    let again = erase(&sys, "dpo", RIA.id, "dana", "")
        .await
        .expect("answers")
        .expect("a repeat is fine");
    assert!(again.failed.is_empty(), "{again:#?}");
    assert_eq!(
        again.parts.iter().map(|p| p.removed).sum::<u64>(),
        0,
        "{again:#?}"
    );

    // The trail: one record per erasure asked, by the DPO's identity for
    // dana, with counts, and the keyed hash of the id; never the person.
    let records = erasure_records(&sys).await;
    assert_eq!(records.len(), 3, "{records:#?}");
    let complete = records
        .iter()
        .find(|r| {
            r.attributes.get("complete").map(String::as_str) == Some("true")
                && r.summary.contains("removed")
        })
        .expect("the complete erasure's record");
    assert_eq!(complete.notification_id, done.erasure_id);
    assert_eq!(complete.caller, "dpo");
    assert_eq!(complete.actor, "dana");
    assert!(
        complete.summary.contains("erasure request of 2 March"),
        "{complete:?}"
    );
    assert!(complete.contact_id.is_empty() && complete.case_id.is_empty());
    let counted = |r: &AuditRecord, store: &str| -> u64 {
        r.attributes
            .get(&format!("removed.{store}"))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    assert_eq!(
        complete.attributes.get("subject_hash").map(String::as_str),
        Some(
            herald_content::token::sign(
                b"erasure-hash-key-for-tests",
                &format!("erased-contact:{}", RIA.id)
            )
            .as_str()
        ),
        "the DPO can check who was erased, with the key"
    );
    let partial_record = records
        .iter()
        .find(|r| r.attributes.get("complete").map(String::as_str) == Some("false"))
        .expect("the incomplete erasure is documented too");
    assert!(
        partial_record.attributes.contains_key("failed.escalation"),
        "{partial_record:#?}"
    );
    // What each try removed, as its report said.
    for store in [
        subjects::STREAM_AUDIT,
        subjects::STREAM_INBOUND,
        "redis:delivery",
    ] {
        assert_eq!(
            counted(partial_record, store),
            removed(&partial, store),
            "{store}"
        );
        assert!(
            counted(partial_record, store) > 0,
            "{store}: {partial_record:#?}"
        );
    }
    for store in ["redis:dir", "redis:escalation"] {
        assert_eq!(counted(complete, store), removed(&done, store), "{store}");
    }
    for r in &records {
        assert!(RIA.found_in(&r.encode_to_vec()).is_empty(), "{r:#?}");
    }
    // Each service erased within its own keys.
    let denied = sys.redis.denials();
    assert!(denied.is_empty(), "{denied:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_recipient_leaves_a_broadcast_and_a_group_to_the_others() {
    use herald_directory::groups::Group;
    use herald_proto::v1::{
        Audience, BroadcastMessage, Cycles, Severity, StartBroadcast, broadcast_reply,
    };
    let (sys, _dir) = system().await;
    sys.add_groups(&[Group {
        id: "wardens".into(),
        name: "Fire wardens".into(),
        description: String::new(),
        members: vec![RIA.id.into(), TOM.id.into()],
    }])
    .await;
    let start = StartBroadcast {
        broadcast_id: "fire-b".into(),
        credential: herald_testkit::system::COORDINATOR_TOKEN.into(),
        severity: Severity::Extreme as i32,
        audience: Some(Audience {
            group_ids: vec!["wardens".into()],
            ..Default::default()
        }),
        messages: vec![BroadcastMessage {
            language: "en".into(),
            subject: "Evacuate building B".into(),
            body: "Evacuate building B. Leave by the nearest exit.".into(),
            speak: "Evacuate building B now.".into(),
            sms: String::new(),
        }],
        cycles: Some(Cycles {
            cycles: 1,
            ..Default::default()
        }),
        // Texts too, confirmed by a reply from the number.
        sms: true,
        ..Default::default()
    };
    let reply = sys
        .broadcast_request(subjects::BROADCAST_START, &start)
        .await;
    assert!(
        matches!(reply.result, Some(broadcast_reply::Result::Accepted(_))),
        "{reply:?}"
    );
    sys.http.wait_for("/voice", 2, WAIT).await;
    sys.smtp.wait_for_mail_to(RIA.email, "Evacuate", WAIT).await;
    sys.wait_until_idle().await;
    let before = traces_of(&sys, &RIA).await;
    assert!(
        before.iter().any(|p| p.starts_with("herald:broadcast:")),
        "the broadcast keeps Ria before: {before:#?}"
    );
    // Her number is also kept by its hash, for the replies that confirm.
    let hashed = |who: &Who| {
        let hash = herald_broadcast::state::phone_hash(who.phone);
        move |keys: &[(String, Vec<u8>)]| {
            keys.iter()
                .any(|(k, v)| k.contains(&hash) || String::from_utf8_lossy(v).contains(&hash))
        }
    };
    assert!(hashed(&RIA)(&every_key(&sys).await));

    let done = erase(&sys, "dpo", RIA.id, "dana", "")
        .await
        .expect("answers")
        .expect("erased");
    assert!(done.failed.is_empty(), "{done:#?}");
    assert!(removed(&done, "redis:broadcast") > 0, "{done:#?}");
    let left = traces_of(&sys, &RIA).await;
    assert!(left.is_empty(), "left of Ria: {left:#?}");
    let keys = every_key(&sys).await;
    assert!(!hashed(&RIA)(&keys), "her number's hash is gone");
    assert!(hashed(&TOM)(&keys), "his is not");

    // Tom is still a recipient of the broadcast and a warden.
    let tom = traces_of(&sys, &TOM).await;
    assert!(
        tom.iter().any(|p| p.starts_with("herald:broadcast:")),
        "{tom:#?}"
    );
    assert!(
        tom.iter()
            .any(|p| p.starts_with("herald:dir:group:wardens")),
        "{tom:#?}"
    );
}
