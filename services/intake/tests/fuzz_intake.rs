//! Every intake subject a stranger can publish to, fed random bytes and
//! random but well-formed messages through the same decoding and checks
//! intake runs before it looks anything up. Each payload must get an
//! answer: accepted (and then within every limit), or refused with a known
//! code, a reason and the field at fault. Only a payload that is not a
//! message at all (undecodable or too large) is refused as a whole, naming
//! no field.
//!
//! The case count is low by default so `cargo test` stays quick;
//! `PROPTEST_CASES` raises it (`make fuzz`).

use std::{
    collections::BTreeMap,
    sync::LazyLock,
    time::{Duration, SystemTime},
};

use herald_config::{BroadcastConfig, Coordinator, MAX_CYCLES};
use herald_content::{routing::RoutingRules, templates::TemplateStore};
use herald_directory::{
    contacts::{Consent, Contact},
    coordinators,
};
use herald_intake::validate::{self, DirectoryOrder, Limits};
use herald_proto::{
    Message, subjects,
    v1::{
        ActionDone, ActionItem, Attachment, Audience, BreachRelease, BroadcastMessage,
        CancelBroadcast, CancelRequest, CaseChannel, CaseDetails, CaseEvent, CaseEventKind,
        ClientReply, CommunicationType, Confidentiality, ContactList, DirectoryRequest, ErrorCode,
        Feedback, FeedbackUpdate, GroupList, InlineRecipient, Interaction, Meeting, MeetingAnswer,
        NotificationRequest, Priority, Recipient, Rejected, Severity, StartBroadcast,
        UpdateBroadcast, broadcast_command::Command, directory_request::Op, recipient::Target,
    },
};
use proptest::{collection::vec, option, prelude::*, sample::select};
use sha2::{Digest, Sha256};

/// `PROPTEST_CASES` when set, else a count small enough for every run.
fn cases(default: u32) -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = default;
    }
    config
}

const MAX_PAYLOAD: usize = 4096;
const MAX_RECIPIENTS: usize = 8;
const COORDINATOR_TOKEN: &str = "a-coordinator-token";

static TEMPLATES: LazyLock<TemplateStore> = LazyLock::new(|| {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/templates");
    match TemplateStore::load(&dir) {
        Ok(t) => t,
        Err(problems) => panic!("the shipped templates do not load: {problems:?}"),
    }
});

static RULES: LazyLock<RoutingRules> = LazyLock::new(|| match RoutingRules::load(None) {
    Ok(r) => r,
    Err(problems) => panic!("the built-in routing rules do not load: {problems:?}"),
});

static BROADCAST: LazyLock<BroadcastConfig> = LazyLock::new(|| BroadcastConfig {
    coordinators: vec![Coordinator {
        id: "anna".into(),
        token_sha256: hex::encode(Sha256::digest(COORDINATOR_TOKEN)),
    }],
    ..BroadcastConfig::default()
});

/// The shipped template ids and every parameter name they take, so that
/// generated requests name real templates often enough to get past them.
static TEMPLATE_IDS: LazyLock<Vec<String>> = LazyLock::new(|| {
    let mut ids: Vec<String> = TEMPLATES.all().map(|t| t.id.clone()).collect();
    ids.dedup();
    ids
});
static TEMPLATE_PARAMS: LazyLock<Vec<(String, Vec<String>)>> = LazyLock::new(|| {
    TEMPLATES
        .all()
        .map(|t| (t.id.clone(), t.params.clone()))
        .collect()
});
static PARAM_NAMES: LazyLock<Vec<String>> = LazyLock::new(|| {
    let mut names: Vec<String> = TEMPLATES.all().flat_map(|t| t.params.clone()).collect();
    names.sort();
    names.dedup();
    names
});

// The top-level fields of each message: a refusal must name one of them.
const NOTIFY_FIELDS: &[&str] = &[
    "idempotency_key",
    "communication_type",
    "priority",
    "confidentiality",
    "recipients",
    "template_id",
    "template_version",
    "params",
    "channel_override",
    "case_id",
    "requester",
    "responsible_staff",
    "key_press_url",
    "language",
    "cancel_keys",
    "about_contact_id",
    "attachments",
];
const CASE_FIELDS: &[&str] = &[
    "event_id",
    "case_id",
    "kind",
    "occurred_at",
    "actor",
    "details",
    "feedback",
    "reason",
    "reply",
    "interaction",
    "action_done",
    "feedback_update",
    "meeting",
    "meeting_answer",
];
const START_FIELDS: &[&str] = &[
    "broadcast_id",
    "credential",
    "severity",
    "audience",
    "messages",
    "default_language",
    "sms",
    "cycles",
    "case_id",
    "template_id",
    "params",
];
const UPDATE_FIELDS: &[&str] = &["broadcast_id", "credential", "messages", "default_language"];
const BROADCAST_CANCEL_FIELDS: &[&str] = &["broadcast_id", "credential", "reason"];
const CANCEL_FIELDS: &[&str] = &["cancel_key", "reason", "requester"];
const BREACH_FIELDS: &[&str] = &["breach_id", "reason", "requester"];
// `contacts` and `groups` are the records of an import (`put_contacts`,
// `put_groups`), named with their index.
const DIRECTORY_FIELDS: &[&str] = &["op", "contacts", "groups", "requester"];

/// A refusal a caller can act on: a known code, a reason, and a field of
/// the message (none only when the payload as a whole is at fault).
fn clear_refusal(r: &Rejected, fields: &[&str]) -> Result<(), TestCaseError> {
    let code = ErrorCode::try_from(r.code)
        .map_err(|_| TestCaseError::fail(format!("unknown error code in {r:?}")))?;
    prop_assert_ne!(code, ErrorCode::Unspecified, "{:?}", r);
    prop_assert!(!r.message.trim().is_empty(), "no reason given: {r:?}");
    if matches!(code, ErrorCode::Undecodable | ErrorCode::PayloadTooLarge) {
        prop_assert!(r.field.is_empty(), "a whole-payload refusal names {r:?}");
    } else {
        let root = r.field.split(['.', '[']).next().unwrap_or_default();
        prop_assert!(
            fields.contains(&root),
            "refusal names {:?}, which is no field of the message: {r:?}",
            r.field
        );
    }
    Ok(())
}

// ---- what callers send ----------------------------------------------------

/// Text of every kind a caller might put in a field: nothing, a valid
/// token, printable ASCII, anything at all, or text around the length
/// limits.
fn text() -> BoxedStrategy<String> {
    prop_oneof![
        Just(String::new()),
        "[A-Za-z0-9_:@+=-]{1,24}",
        "[ -~]{0,40}",
        any::<String>(),
        long(60, 70),
        long(190, 210),
        long(250, 260),
    ]
    .boxed()
}

/// Text of `min..max` characters, one repeated: cheap to make at any
/// length, and multi-byte for some, where a byte limit and a character
/// limit differ.
fn long(min: usize, max: usize) -> BoxedStrategy<String> {
    (min..max, select(vec!['a', 'é', '\u{1F4E3}', ' ']))
        .prop_map(|(n, c)| std::iter::repeat_n(c, n).collect())
        .boxed()
}

/// `min..max` distinct names.
fn many_names(min: usize, max: usize) -> BoxedStrategy<Vec<String>> {
    (min..max)
        .prop_map(|n| (0..n).map(|i| format!("n{i}")).collect())
        .boxed()
}

/// An identifier: usually a valid subject token, sometimes not.
fn id() -> BoxedStrategy<String> {
    prop_oneof![
        3 => "[A-Za-z0-9_-]{1,16}",
        1 => text(),
    ]
    .boxed()
}

/// An enum value: mostly a known one, sometimes any number at all.
fn enum_value(max: i32) -> BoxedStrategy<i32> {
    prop_oneof![4 => 0..=max, 1 => any::<i32>()].boxed()
}

fn language() -> BoxedStrategy<String> {
    prop_oneof![
        Just(String::new()),
        select(vec!["en", "fr", "es", "en-GB", "fr-CA", "de", "EN"]).prop_map(String::from),
        text(),
    ]
    .boxed()
}

fn email() -> BoxedStrategy<String> {
    prop_oneof![
        Just(String::new()),
        "[a-z]{1,8}@example\\.org",
        "[a-z.]{0,6}@[a-z.-]{0,12}",
        text(),
    ]
    .boxed()
}

fn phone() -> BoxedStrategy<String> {
    prop_oneof![
        Just(String::new()),
        "\\+44[0-9]{10}",
        "\\+?[0-9 ]{0,18}",
        text(),
    ]
    .boxed()
}

fn inline_recipient() -> BoxedStrategy<InlineRecipient> {
    (
        text(),
        email(),
        phone(),
        language(),
        enum_value(3),
        any::<[bool; 4]>(),
    )
        .prop_map(
            |(name, email, phone, language, preferred_channel, [ce, cs, cv, verified])| {
                InlineRecipient {
                    name,
                    email,
                    phone,
                    language,
                    preferred_channel,
                    consent_email: ce,
                    consent_sms: cs,
                    consent_voice: cv,
                    identity_verified: verified,
                }
            },
        )
        .boxed()
}

fn recipient() -> BoxedStrategy<Recipient> {
    prop_oneof![
        1 => Just(Recipient { target: None }),
        3 => id().prop_map(|id| Recipient { target: Some(Target::ContactId(id)) }),
        4 => inline_recipient().prop_map(|r| Recipient { target: Some(Target::Inline(r)) }),
    ]
    .boxed()
}

/// A directory record as a lookup returns it (already checked when it was
/// imported, but with any consent and addresses).
fn contact() -> BoxedStrategy<Contact> {
    (
        id(),
        mostly("[a-z]{1,8}@example\\.org".prop_map(Some), Just(None)),
        option::of("\\+44[0-9]{10}"),
        option::of(select(vec!["email", "sms", "voice"])),
        proptest::bool::weighted(0.9),
        any::<[bool; 3]>(),
        language(),
    )
        .prop_map(
            |(id, email, phone, preferred, e, [s, v, verified], language)| Contact {
                id,
                name: "Someone".into(),
                email,
                phone,
                preferred_channel: preferred.map(String::from),
                language,
                time_zone: "UTC".into(),
                identity_verified: verified,
                verification: verified.then(|| herald_directory::contacts::Verification {
                    by: "sup-ana".into(),
                    method: "passport seen".into(),
                    at: chrono::DateTime::UNIX_EPOCH + chrono::Duration::days(20_000),
                }),
                third_party: false,
                third_party_category: None,
                sharing: Vec::new(),
                consent: Consent {
                    email: e,
                    sms: s,
                    voice: v,
                },
                organisation: None,
                role: None,
                team: None,
                interprets: Vec::new(),
            },
        )
        .boxed()
}

/// What the directory answers for each contact id, in order.
fn lookups() -> BoxedStrategy<Vec<Option<Contact>>> {
    vec(option::weighted(0.8, contact()), 16).boxed()
}

/// Mostly `usual`, now and then `odd`. Each field of a generated message
/// is usually right, so that whole messages get far enough to be accepted,
/// and wrong often enough for every check to refuse some by name.
fn mostly<T: std::fmt::Debug + 'static>(
    usual: impl Strategy<Value = T> + 'static,
    odd: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<T> {
    prop_oneof![12 => usual.boxed(), 1 => odd.boxed()].boxed()
}

fn template_id() -> BoxedStrategy<String> {
    prop_oneof![
        4 => select(TEMPLATE_IDS.clone()),
        1 => text(),
    ]
    .boxed()
}

fn params() -> BoxedStrategy<BTreeMap<String, String>> {
    let name = prop_oneof![
        4 => select(PARAM_NAMES.clone()),
        1 => "[A-Za-z_][A-Za-z0-9_]{0,8}",
        1 => text(),
    ];
    let value = prop_oneof![4 => "[ -~]{0,20}".boxed(), 1 => text(), 1 => long(4090, 4100)];
    prop_oneof![
        8 => proptest::collection::btree_map(name, value, 0..6),
        1 => many_names(60, 70)
            .prop_map(|names| names.into_iter().map(|n| (n, String::new())).collect()),
    ]
    .boxed()
}

/// A shipped template with (nearly always) the parameters it takes, or
/// any id with any parameters.
fn template_and_params() -> BoxedStrategy<(String, BTreeMap<String, String>)> {
    let shipped = select(TEMPLATE_PARAMS.clone())
        .prop_flat_map(|(id, needed)| {
            let keep = vec(proptest::bool::weighted(0.97), needed.len());
            let extra = mostly(Just(BTreeMap::new()), params());
            (Just(id), Just(needed), keep, extra)
        })
        .prop_map(|(id, needed, keep, mut params)| {
            for (p, keep) in needed.into_iter().zip(keep) {
                if keep {
                    params.entry(p).or_insert_with(|| "R-1".into());
                }
            }
            (id, params)
        });
    mostly(shipped, (template_id(), params()))
}

/// A recipient that can nearly always be reached: an address and consent
/// for it, or a contact id.
fn plausible_recipient() -> BoxedStrategy<Recipient> {
    let inline = (
        "[a-z]{1,8}@example\\.org",
        prop_oneof![Just(String::new()), "\\+44[0-9]{10}"],
        select(vec!["", "en", "fr-CA"]),
        0..=2i32,
        proptest::bool::weighted(0.97),
        any::<[bool; 2]>(),
    )
        .prop_map(
            |(email, phone, language, preferred_channel, consent_email, [sms, voice])| Recipient {
                target: Some(Target::Inline(InlineRecipient {
                    name: "Ann".into(),
                    email,
                    phone,
                    language: language.into(),
                    preferred_channel,
                    consent_email,
                    consent_sms: sms,
                    consent_voice: voice,
                    identity_verified: false,
                })),
            },
        );
    prop_oneof![
        6 => inline,
        1 => "[a-z]{1,8}".prop_map(|id| Recipient { target: Some(Target::ContactId(id)) }),
    ]
    .boxed()
}

fn notification_request() -> BoxedStrategy<NotificationRequest> {
    (
        (
            mostly("[a-z0-9-]{1,20}", text()),
            mostly(1..=12i32, enum_value(12)),
            enum_value(4),
            enum_value(4),
            mostly(
                vec(plausible_recipient(), 1..=3),
                prop_oneof![
                    vec(
                        plausible_recipient(),
                        MAX_RECIPIENTS - 1..=MAX_RECIPIENTS + 1
                    ),
                    vec(recipient(), 0..=MAX_RECIPIENTS + 2),
                ],
            ),
            template_and_params(),
            mostly(Just(0u32), prop_oneof![1..3u32, any::<u32>()]),
        ),
        (
            mostly(Just(Vec::new()), vec(enum_value(3), 0..3)),
            mostly(prop_oneof![Just(String::new()), "CASE-[0-9]{1,4}"], id()),
            mostly("[ -~]{0,20}", text()),
            mostly("[ -~]{0,20}", text()),
            mostly(
                select(vec!["", "en", "fr", "es-MX"]).prop_map(String::from),
                language(),
            ),
            mostly(
                vec("[a-z]{1,6}(@[0-9]{1,3})?", 0..3),
                prop_oneof![
                    vec(id(), 0..3).boxed(),
                    many_names(7, 10),
                    many_names(30, 40),
                ],
            ),
            mostly(
                Just(String::new()),
                prop_oneof![Just("https://h.example/k?c=1".to_string()), text()],
            ),
            mostly(Just(String::new()), id()),
        ),
    )
        .prop_map(
            |(
                (key, ctype, priority, confidentiality, recipients, (template_id, params), version),
                (overrides, case_id, requester, staff, language, cancel_keys, key_press_url, about),
            )| NotificationRequest {
                idempotency_key: key,
                communication_type: ctype,
                priority,
                confidentiality,
                recipients,
                template_id,
                template_version: version,
                params: params.into_iter().collect(),
                channel_override: overrides,
                case_id,
                requester,
                responsible_staff: staff,
                language,
                cancel_keys,
                key_press_url,
                about_contact_id: about,
                affected_contact_ids: Vec::new(),
                attachments: Vec::new(),
            },
        )
        .prop_flat_map(|req| (Just(req), mostly(Just(Vec::new()), vec(attachment(), 0..6))))
        .prop_map(|(req, attachments)| NotificationRequest { attachments, ..req })
        .boxed()
}

/// An attachment, usually a small calendar file, sometimes anything.
fn attachment() -> BoxedStrategy<Attachment> {
    (
        mostly(Just("invite.ics".to_string()), text()),
        mostly(
            Just("text/calendar; method=REQUEST; charset=UTF-8".to_string()),
            text(),
        ),
        mostly(
            vec(any::<u8>(), 1..200),
            prop_oneof![Just(Vec::new()), vec(any::<u8>(), 65_530..65_540)],
        ),
    )
        .prop_map(|(filename, content_type, content)| Attachment {
            filename,
            content_type,
            content,
        })
        .boxed()
}

/// A meeting, usually a plausible one.
fn meeting() -> BoxedStrategy<Meeting> {
    (
        mostly(Just(String::new()), id()),
        mostly("[A-Za-z ]{1,40}", prop_oneof![text(), long(195, 205)]),
        mostly(vec("[a-z0-9-]{1,10}", 1..3), vec(text(), 0..52)),
        mostly(option::of(timestamp()), option::of(timestamp_in_the_past())),
        mostly(15..120u32, any::<u32>()),
        mostly(Just(String::new()), prop_oneof![text(), long(495, 505)]),
        mostly(
            Just(String::new()),
            prop_oneof![Just("https://meet.example/x".to_string()), text()],
        ),
        any::<bool>(),
        mostly(Just(Vec::new()), vec(id(), 0..3)),
    )
        .prop_map(
            |(
                meeting_id,
                title,
                attendees,
                at,
                duration_minutes,
                location,
                video_link,
                interpreter,
                interpreters,
            )| Meeting {
                meeting_id,
                title,
                attendees,
                at,
                duration_minutes,
                location,
                video_link,
                interpreter,
                interpreters,
            },
        )
        .boxed()
}

fn timestamp_in_the_past() -> BoxedStrategy<herald_proto::Timestamp> {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    (now - 30 * 24 * 3600..now, 0..1_000_000_000i32)
        .prop_map(|(seconds, nanos)| herald_proto::Timestamp { seconds, nanos })
        .boxed()
}

fn timestamp() -> BoxedStrategy<herald_proto::Timestamp> {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    prop_oneof![
        3 => (0..now, 0..1_000_000_000i32),
        1 => (now..now + 3600, 0..1_000_000_000i32),
        1 => (any::<i64>(), any::<i32>()),
    ]
    .prop_map(|(seconds, nanos)| herald_proto::Timestamp { seconds, nanos })
    .boxed()
}

/// Details of a case: as an opening gives them (`opening`), or as an
/// update does (only what changes), each field now and then wrong.
fn case_details(opening: bool) -> BoxedStrategy<CaseDetails> {
    let optional = || mostly(prop_oneof![Just(String::new()), "[a-z0-9_-]{1,12}"], id());
    (
        if opening {
            mostly(1..=5i32, enum_value(6))
        } else {
            mostly(Just(0), enum_value(6))
        },
        enum_value(4),
        if opening {
            mostly("[a-z0-9]{1,8}", prop_oneof![Just(String::new()), id()])
        } else {
            mostly(Just(String::new()), id())
        },
        optional(),
        optional(),
        mostly("[A-Z0-9-]{0,12}", prop_oneof![text(), long(60, 70)]),
    )
        .prop_map(
            |(channel, priority, client_contact_id, responsible_staff, team, reference)| {
                CaseDetails {
                    channel,
                    priority,
                    client_contact_id,
                    responsible_staff,
                    team,
                    reference,
                }
            },
        )
        .boxed()
}

fn feedback() -> BoxedStrategy<Feedback> {
    (
        mostly(1..=5u32, prop_oneof![Just(0u32), 6..10u32, any::<u32>()]),
        mostly("[ -~]{0,40}", prop_oneof![text(), long(3995, 4005)]),
        mostly(prop_oneof![Just(String::new()), "[a-z_]{1,12}"], text()),
    )
        .prop_map(|(rating, comment, category)| Feedback {
            rating,
            comment,
            category,
        })
        .boxed()
}

fn interaction() -> BoxedStrategy<Interaction> {
    let action = (
        mostly("[A-Za-z ]{1,30}", prop_oneof![text(), long(495, 505)]),
        mostly("[a-z0-9-]{1,12}", prop_oneof![Just(String::new()), id()]),
        mostly(option::of(timestamp()), Just(None)),
    )
        .prop_map(|(description, owner, due)| ActionItem {
            description,
            owner,
            due,
        });
    (
        mostly(1..=4i32, enum_value(5)),
        mostly("[ -~]{1,60}", prop_oneof![text(), long(1995, 2005)]),
        mostly("[ -~]{0,30}", text()),
        mostly(
            proptest::collection::vec(action.clone(), 0..3),
            proptest::collection::vec(action, 19..22),
        ),
    )
        .prop_map(|(kind, summary, outcome, actions)| Interaction {
            kind,
            summary,
            outcome,
            actions,
        })
        .boxed()
}

/// A case event, usually with the details, feedback or interaction its
/// kind carries.
fn case_event() -> BoxedStrategy<CaseEvent> {
    mostly(1..=17i32, enum_value(18))
        .prop_flat_map(|kind| {
            let details = if kind == CaseEventKind::Opened as i32 {
                mostly(
                    case_details(true).prop_map(Some),
                    option::of(case_details(false)),
                )
            } else if kind == CaseEventKind::Updated as i32 {
                mostly(
                    case_details(false).prop_map(Some),
                    option::of(case_details(true)),
                )
            } else {
                mostly(Just(None), option::of(case_details(true)))
            };
            let feedback = if kind == CaseEventKind::FeedbackReceived as i32 {
                mostly(feedback().prop_map(Some), Just(None))
            } else {
                mostly(Just(None), option::of(feedback()))
            };
            let interaction = if kind == CaseEventKind::InteractionLogged as i32 {
                mostly(interaction().prop_map(Some), Just(None))
            } else {
                mostly(Just(None), option::of(interaction()))
            };
            let feedback_update = mostly(
                if kind == CaseEventKind::FeedbackUpdated as i32 {
                    (enum_value(4), "[ -~]{0,30}")
                        .prop_map(|(status, note)| Some(FeedbackUpdate { status, note }))
                        .boxed()
                } else {
                    Just(None).boxed()
                },
                option::of(
                    (enum_value(4), text())
                        .prop_map(|(status, note)| FeedbackUpdate { status, note }),
                ),
            );
            let action_done = mostly(
                option::of(
                    "[a-z0-9-]{1,10}/[0-9]{1,2}".prop_map(|action_id| ActionDone { action_id }),
                ),
                option::of(text().prop_map(|action_id| ActionDone { action_id })),
            );
            (
                mostly("[a-z0-9-]{1,20}", text()),
                mostly("CASE-[0-9]{1,6}", prop_oneof![text(), long(95, 105)]),
                Just(kind),
                mostly(option::of(timestamp_in_the_past()), option::of(timestamp())),
                mostly("[ -~]{0,20}", text()),
                details,
                feedback,
                mostly("[ -~]{0,40}", prop_oneof![text(), long(495, 505)]),
                mostly(
                    Just(None),
                    option::of((enum_value(4), text(), text()).prop_map(
                        |(channel, contact_id, message_id)| ClientReply {
                            channel,
                            contact_id,
                            message_id,
                        },
                    )),
                ),
                (interaction, action_done, feedback_update),
                (
                    if (14..=16).contains(&kind) {
                        mostly(meeting().prop_map(Some), Just(None))
                    } else {
                        mostly(Just(None), option::of(meeting()))
                    },
                    mostly(
                        if kind == CaseEventKind::MeetingAnswered as i32 {
                            ("[a-z0-9-]{1,10}", "[a-z0-9-]{1,10}", any::<bool>())
                                .prop_map(|(meeting_id, contact_id, accepted)| {
                                    Some(MeetingAnswer {
                                        meeting_id,
                                        contact_id,
                                        accepted,
                                    })
                                })
                                .boxed()
                        } else {
                            Just(None).boxed()
                        },
                        option::of((text(), text(), any::<bool>()).prop_map(
                            |(meeting_id, contact_id, accepted)| MeetingAnswer {
                                meeting_id,
                                contact_id,
                                accepted,
                            },
                        )),
                    ),
                ),
            )
        })
        .prop_map(
            |(
                event_id,
                case_id,
                kind,
                occurred_at,
                actor,
                details,
                feedback,
                reason,
                reply,
                (interaction, action_done, feedback_update),
                (meeting, meeting_answer),
            )| {
                CaseEvent {
                    event_id,
                    case_id,
                    kind,
                    occurred_at,
                    actor,
                    details,
                    feedback,
                    reason,
                    reply,
                    interaction,
                    action_done,
                    feedback_update,
                    meeting,
                    meeting_answer,
                }
            },
        )
        .boxed()
}

fn credential() -> BoxedStrategy<String> {
    prop_oneof![
        2 => Just(COORDINATOR_TOKEN.to_string()),
        1 => Just(format!(" {COORDINATOR_TOKEN}\n")),
        1 => text(),
    ]
    .boxed()
}

fn broadcast_message() -> BoxedStrategy<BroadcastMessage> {
    let words = || prop_oneof![3 => "[A-Za-z ]{1,30}", 1 => text()];
    (
        language(),
        prop_oneof![6 => words(), 1 => "[a-z\n]{1,10}".boxed()],
        prop_oneof![6 => words(), 1 => long(7990, 8010)],
        prop_oneof![6 => words(), 1 => long(995, 1005)],
        prop_oneof![3 => Just(String::new()).boxed(), 3 => words(), 1 => long(1595, 1605)],
    )
        .prop_map(|(language, subject, body, speak, sms)| BroadcastMessage {
            language,
            subject,
            body,
            speak,
            sms,
        })
        .boxed()
}

fn audience() -> BoxedStrategy<Audience> {
    let names = || prop_oneof![4 => vec(id(), 0..3).boxed(), 1 => many_names(1000, 1002)];
    (names(), names(), names(), names())
        .prop_map(|(contact_ids, group_ids, organisations, roles)| Audience {
            contact_ids,
            group_ids,
            organisations,
            roles,
        })
        .boxed()
}

fn cycles() -> BoxedStrategy<herald_proto::v1::Cycles> {
    let small = || prop_oneof![Just(0u32), 1..100u32, any::<u32>()];
    (small(), prop_oneof![0..25u32, any::<u32>()], small())
        .prop_map(
            |(interval_seconds, cycles, duration_seconds)| herald_proto::v1::Cycles {
                interval_seconds,
                cycles,
                duration_seconds,
            },
        )
        .boxed()
}

fn start_broadcast() -> BoxedStrategy<StartBroadcast> {
    (
        (
            prop_oneof![4 => "[a-z0-9-]{1,20}", 1 => text(), 1 => Just("ntf_1".to_string())],
            credential(),
            enum_value(4),
            option::of(audience()),
            prop_oneof![
                8 => vec(broadcast_message(), 0..4),
                1 => vec(broadcast_message(), 20..22),
            ],
            language(),
        ),
        (
            any::<bool>(),
            option::of(cycles()),
            prop_oneof![Just(String::new()), id()],
            prop_oneof![3 => Just(String::new()), 1 => template_id()],
            params(),
        ),
    )
        .prop_map(
            |(
                (broadcast_id, credential, severity, audience, messages, default_language),
                (sms, cycles, case_id, template_id, params),
            )| StartBroadcast {
                broadcast_id,
                credential,
                severity,
                audience,
                messages,
                default_language,
                sms,
                cycles,
                case_id,
                template_id,
                params: params.into_iter().collect(),
                ..Default::default()
            },
        )
        .boxed()
}

fn update_broadcast() -> BoxedStrategy<UpdateBroadcast> {
    (
        prop_oneof![4 => "[a-z0-9-]{1,20}", 1 => text()],
        credential(),
        vec(broadcast_message(), 0..4),
        language(),
    )
        .prop_map(
            |(broadcast_id, credential, messages, default_language)| UpdateBroadcast {
                broadcast_id,
                credential,
                messages,
                default_language,
                ..Default::default()
            },
        )
        .boxed()
}

fn cancel_broadcast() -> BoxedStrategy<CancelBroadcast> {
    (
        prop_oneof![4 => "[a-z0-9-]{1,20}", 1 => text()],
        credential(),
        text(),
    )
        .prop_map(|(broadcast_id, credential, reason)| CancelBroadcast {
            broadcast_id,
            credential,
            reason,
        })
        .boxed()
}

fn broadcast_command() -> BoxedStrategy<Command> {
    prop_oneof![
        start_broadcast().prop_map(Command::Start),
        update_broadcast().prop_map(Command::Update),
        cancel_broadcast().prop_map(Command::Cancel),
    ]
    .boxed()
}

fn cancel_request() -> BoxedStrategy<CancelRequest> {
    (
        prop_oneof![4 => "[a-z]{1,6}(-[0-9]{1,4})?(@[0-9]{1,3})?", 1 => text()],
        text(),
        text(),
    )
        .prop_map(|(cancel_key, reason, requester)| CancelRequest {
            cancel_key,
            reason,
            requester,
        })
        .boxed()
}

fn breach_release() -> BoxedStrategy<BreachRelease> {
    (
        prop_oneof![4 => "breach-ntf_[0-9A-Z]{1,26}", 1 => text()],
        text(),
        text(),
    )
        .prop_map(|(breach_id, reason, requester)| BreachRelease {
            breach_id,
            reason,
            requester,
        })
        .boxed()
}

fn wire_contact() -> BoxedStrategy<herald_proto::v1::Contact> {
    (
        (
            mostly("[a-z0-9]{1,8}", id()),
            mostly("[A-Z][a-z]{1,8}", text()),
            mostly(Just(Some("a@example.org".to_string())), option::of(email())),
            mostly(Just(Some("+447700900123".to_string())), option::of(phone())),
            mostly(Just(Vec::new()), vec(language(), 0..3)),
        ),
        (
            mostly(Just(0), enum_value(3)),
            mostly(Just(String::new()), language()),
            mostly(
                select(vec!["", "UTC", "Europe/London"]).prop_map(String::from),
                prop_oneof![Just("Mars/Olympus".to_string()), text()],
            ),
            any::<[bool; 4]>(),
            mostly(Just(None), option::of(text())),
            mostly(Just(None), option::of(id())),
            mostly(Just(None), option::of(id())),
        ),
    )
        .prop_map(
            |(
                (id, name, email, phone, interprets),
                (preferred_channel, language, time_zone, [e, s, v, verified], org, role, team),
            )| herald_proto::v1::Contact {
                id,
                name,
                email,
                phone,
                preferred_channel,
                language,
                time_zone,
                identity_verified: verified,
                verification: verified.then(|| herald_proto::v1::Verification {
                    by: "sup-ana".into(),
                    method: "passport seen".into(),
                    at: Some(herald_proto::now()),
                }),
                third_party: false,
                third_party_category: None,
                sharing: Vec::new(),
                consent: Some(herald_proto::v1::Consent {
                    email: e,
                    sms: s,
                    voice: v,
                }),
                organisation: org,
                role,
                team,
                interprets,
            },
        )
        .boxed()
}

fn wire_group() -> BoxedStrategy<herald_proto::v1::Group> {
    (
        mostly("[a-z0-9]{1,8}", id()),
        mostly("[A-Z][a-z]{1,8}", text()),
        text(),
        mostly(vec("[a-z0-9]{1,8}", 1..4), vec(id(), 0..4)),
    )
        .prop_map(|(id, name, description, members)| herald_proto::v1::Group {
            id,
            name,
            description,
            members,
        })
        .boxed()
}

fn directory_request() -> BoxedStrategy<DirectoryRequest> {
    let op = prop_oneof![
        4 => vec(wire_contact(), 0..4).prop_map(|contacts| Op::PutContacts(ContactList { contacts })),
        1 => (1000..1002usize).prop_map(|n| Op::PutContacts(ContactList {
            contacts: vec![herald_proto::v1::Contact::default(); n],
        })),
        4 => vec(wire_group(), 0..4).prop_map(|groups| Op::PutGroups(GroupList { groups })),
        1 => text().prop_map(Op::GetContact),
        1 => any::<bool>().prop_map(Op::ListContacts),
        1 => text().prop_map(Op::RemoveContact),
        1 => text().prop_map(Op::GetGroup),
        1 => any::<bool>().prop_map(Op::ListGroups),
        1 => text().prop_map(Op::RemoveGroup),
    ];
    (option::weighted(0.95, op), text())
        .prop_map(|(op, requester)| DirectoryRequest { op, requester })
        .boxed()
}

/// Bytes as a stranger might send them: random, or a real message cut
/// short or with some bytes overwritten.
fn payload<M: Message + std::fmt::Debug + 'static>(
    message: BoxedStrategy<M>,
) -> BoxedStrategy<Vec<u8>> {
    let damaged = (
        message,
        vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        option::of(any::<prop::sample::Index>()),
    )
        .prop_map(|(m, edits, cut)| {
            let mut bytes = m.encode_to_vec();
            if !bytes.is_empty() {
                for (at, b) in edits {
                    let i = at.index(bytes.len());
                    bytes[i] = b;
                }
                if let Some(cut) = cut {
                    bytes.truncate(cut.index(bytes.len()));
                }
            }
            bytes
        });
    prop_oneof![
        vec(any::<u8>(), 0..256).boxed(),
        damaged.boxed(),
        (MAX_PAYLOAD - 4..MAX_PAYLOAD + 4, any::<u8>())
            .prop_map(|(n, b)| vec![b; n])
            .boxed(),
    ]
    .boxed()
}

// ---- what intake makes of it ----------------------------------------------

/// A notification request checked as intake checks it, with the directory
/// answering `lookups` for the contact ids it names.
fn answer_notification(
    req: NotificationRequest,
    lookups: &[Option<Contact>],
) -> Result<(), TestCaseError> {
    let ids = validate::contact_ids(&req);
    let contacts: Vec<Option<Contact>> = (0..ids.len())
        .map(|i| lookups.get(i).cloned().flatten())
        .collect();
    let limits = Limits {
        max_recipients: MAX_RECIPIENTS,
    };
    match validate::check(req.clone(), &contacts, &TEMPLATES, &RULES, &limits) {
        Err(r) => clear_refusal(&r, NOTIFY_FIELDS),
        Ok(accepted) => {
            prop_assert!(!accepted.idempotency_key.trim().is_empty());
            prop_assert!(matches!(
                CommunicationType::try_from(accepted.communication_type),
                Ok(t) if t != CommunicationType::Unspecified
            ));
            prop_assert!(matches!(
                Priority::try_from(accepted.priority),
                Ok(p) if p != Priority::Unspecified
            ));
            prop_assert!(matches!(
                Confidentiality::try_from(accepted.confidentiality),
                Ok(c) if c != Confidentiality::Unspecified
            ));
            prop_assert!((1..=MAX_RECIPIENTS).contains(&accepted.recipients.len()));
            prop_assert!(contacts.iter().all(Option::is_some));
            // Only the defaults are filled in; nothing else changes.
            let expected = NotificationRequest {
                priority: accepted.priority,
                confidentiality: accepted.confidentiality,
                ..req
            };
            prop_assert_eq!(accepted, expected);
            Ok(())
        }
    }
}

/// A case event's payload read and checked as intake does.
fn answer_case_event(payload: &[u8], now: SystemTime) -> Result<(), TestCaseError> {
    let ev = match validate::decode_case_event(payload, MAX_PAYLOAD) {
        Err(r) => {
            prop_assert_eq!(
                r.code == ErrorCode::PayloadTooLarge as i32,
                payload.len() > MAX_PAYLOAD
            );
            return clear_refusal(&r, CASE_FIELDS);
        }
        Ok(ev) => ev,
    };
    match validate::check_case_event(ev.clone(), now) {
        Err(r) => clear_refusal(&r, CASE_FIELDS),
        Ok(accepted) => {
            prop_assert!(!accepted.event_id.trim().is_empty());
            prop_assert!(
                accepted.case_id.len() <= 100 && subjects::is_subject_token(&accepted.case_id)
            );
            let kind = CaseEventKind::try_from(accepted.kind)
                .map_err(|_| TestCaseError::fail("accepted an unknown kind"))?;
            prop_assert_ne!(kind, CaseEventKind::Unspecified);
            if let Some(t) = &accepted.occurred_at {
                prop_assert!(herald_proto::system_time(Some(t)) <= now + Duration::from_secs(300));
            }
            match (kind, &accepted.details) {
                (CaseEventKind::Opened, Some(d)) => {
                    prop_assert!(matches!(
                        CaseChannel::try_from(d.channel),
                        Ok(c) if c != CaseChannel::Unspecified
                    ));
                    prop_assert!(!d.client_contact_id.is_empty());
                    prop_assert_ne!(d.priority, Priority::Unspecified as i32);
                }
                (CaseEventKind::Updated, Some(_)) | (_, None) => {}
                (k, Some(_)) => prop_assert!(false, "{k:?} accepted with details"),
            }
            if kind == CaseEventKind::FeedbackReceived {
                let rating = accepted.feedback.as_ref().map(|f| f.rating);
                prop_assert!(matches!(rating, Some(1..=5)), "rating {rating:?}");
            } else {
                prop_assert!(accepted.feedback.is_none());
            }
            prop_assert_eq!(
                accepted.interaction.is_some(),
                kind == CaseEventKind::InteractionLogged
            );
            prop_assert_eq!(
                accepted.action_done.is_some(),
                kind == CaseEventKind::ActionDone
            );
            // Only the default priority of an opened case, and a new
            // meeting's id (the event's), are filled in.
            let mut expected = ev;
            if let (Some(d), Some(a)) = (expected.details.as_mut(), &accepted.details) {
                d.priority = a.priority;
            }
            if kind == CaseEventKind::MeetingScheduled
                && let Some(m) = expected.meeting.as_mut()
            {
                m.meeting_id = accepted.event_id.clone();
            }
            prop_assert_eq!(accepted, expected);
            Ok(())
        }
    }
}

/// A coordinator's command read and checked as intake does, credential
/// first: nothing is looked at for a caller who is not a coordinator.
fn answer_broadcast(subject: &str, payload: &[u8]) -> Result<(), TestCaseError> {
    let command = match validate::decode_broadcast(subject, payload) {
        Err(r) => return clear_refusal(&r, START_FIELDS),
        Ok(c) => c,
    };
    let expected_kind = match subject {
        subjects::BROADCAST_START => "start",
        subjects::BROADCAST_UPDATE => "update",
        _ => "cancel",
    };
    let (kind, credential) = match &command {
        Command::Start(r) => ("start", &r.credential),
        Command::Update(r) => ("update", &r.credential),
        Command::Cancel(r) => ("cancel", &r.credential),
    };
    prop_assert_eq!(kind, expected_kind);
    let who = coordinators::authenticate(&BROADCAST.coordinators, credential);
    prop_assert_eq!(
        who.is_some(),
        credential.trim() == COORDINATOR_TOKEN,
        "credential {:?} read as {:?}",
        credential,
        who
    );
    if who.is_none() {
        return Ok(());
    }
    match command {
        Command::Start(req) => {
            match validate::check_broadcast_start(req.clone(), &BROADCAST, &TEMPLATES) {
                Err(r) => clear_refusal(&r, START_FIELDS),
                Ok(accepted) => {
                    prop_assert!(
                        herald_proto::broadcasts::check_id(&accepted.broadcast_id).is_ok()
                    );
                    prop_assert!(matches!(
                        Severity::try_from(accepted.severity),
                        Ok(s) if s != Severity::Unspecified
                    ));
                    prop_assert!(accepted.messages.is_empty() != accepted.template_id.is_empty());
                    if !accepted.messages.is_empty() {
                        prop_assert!(
                            accepted.messages.iter().any(|m| m
                                .language
                                .eq_ignore_ascii_case(&accepted.default_language))
                        );
                    }
                    let c = accepted.cycles.unwrap_or_default();
                    prop_assert!((1..=MAX_CYCLES).contains(&c.cycles), "{c:?}");
                    prop_assert!(c.interval_seconds >= 1, "{c:?}");
                    let needed = u64::from(c.interval_seconds) * u64::from(c.cycles - 1);
                    prop_assert!(u64::from(c.duration_seconds) >= needed, "{c:?}");
                    prop_assert!(c.duration_seconds <= 7 * 24 * 3600, "{c:?}");
                    Ok(())
                }
            }
        }
        Command::Update(req) => match validate::check_broadcast_update(req) {
            Err(r) => clear_refusal(&r, UPDATE_FIELDS),
            Ok(accepted) => {
                prop_assert!(herald_proto::broadcasts::check_id(&accepted.broadcast_id).is_ok());
                prop_assert!(!accepted.messages.is_empty());
                prop_assert!(
                    accepted
                        .messages
                        .iter()
                        .any(|m| m.language.eq_ignore_ascii_case(&accepted.default_language))
                );
                Ok(())
            }
        },
        Command::Cancel(req) => match validate::check_broadcast_cancel(req) {
            Err(r) => clear_refusal(&r, BROADCAST_CANCEL_FIELDS),
            Ok(accepted) => {
                prop_assert!(herald_proto::broadcasts::check_id(&accepted.broadcast_id).is_ok());
                prop_assert!(accepted.reason.chars().count() <= 200);
                Ok(())
            }
        },
    }
}

fn answer_cancel(payload: &[u8]) -> Result<(), TestCaseError> {
    match validate::check_cancel(payload) {
        Err(r) => clear_refusal(&r, CANCEL_FIELDS),
        Ok((key, reason)) => {
            prop_assert!(herald_proto::cancel_keys::check_key(&key).is_ok());
            prop_assert!(!reason.trim().is_empty());
            Ok(())
        }
    }
}

fn answer_directory(payload: &[u8]) -> Result<(), TestCaseError> {
    match validate::read_directory(payload) {
        Err(r) => clear_refusal(&r, DIRECTORY_FIELDS),
        Ok((DirectoryOrder::PutContacts(contacts), _)) => {
            prop_assert!((1..=1000).contains(&contacts.len()));
            for c in &contacts {
                prop_assert!(c.problems().is_empty(), "imported {c:?}");
            }
            let mut ids: Vec<&str> = contacts.iter().map(|c| c.id.as_str()).collect();
            ids.sort_unstable();
            ids.dedup();
            prop_assert_eq!(ids.len(), contacts.len(), "an id imported twice");
            Ok(())
        }
        Ok((DirectoryOrder::PutGroups(groups), _)) => {
            prop_assert!((1..=1000).contains(&groups.len()));
            for g in &groups {
                prop_assert!(g.problems().is_empty(), "imported {g:?}");
            }
            Ok(())
        }
        Ok(_) => Ok(()),
    }
}

fn broadcast_subject() -> BoxedStrategy<&'static str> {
    select(vec![
        subjects::BROADCAST_START,
        subjects::BROADCAST_UPDATE,
        subjects::BROADCAST_CANCEL,
    ])
    .boxed()
}

fn command_payload() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        payload(start_broadcast()),
        payload(update_broadcast()),
        payload(cancel_broadcast()),
    ]
    .boxed()
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn a_stranger_s_bytes_on_the_notify_subject_get_a_refusal_never_a_panic(
        bytes in payload(notification_request()),
        lookups in lookups(),
    ) {
        // Bytes that are no NotificationRequest are refused as a whole
        // before any check; the rest are checked field by field.
        if let Ok(req) = NotificationRequest::decode(bytes.as_slice()) {
            answer_notification(req, &lookups)?;
        }
    }

    #[test]
    fn a_well_formed_notification_request_is_accepted_or_refused_naming_a_field(
        req in notification_request(),
        lookups in lookups(),
    ) {
        let decoded = NotificationRequest::decode(req.encode_to_vec().as_slice())?;
        prop_assert_eq!(&decoded, &req);
        answer_notification(decoded, &lookups)?;
    }

    #[test]
    fn a_stranger_s_bytes_on_the_case_subject_get_a_refusal_never_a_panic(
        bytes in payload(case_event()),
    ) {
        answer_case_event(&bytes, SystemTime::now())?;
    }

    #[test]
    fn a_well_formed_case_event_is_accepted_or_refused_naming_a_field(ev in case_event()) {
        let bytes = ev.encode_to_vec();
        // Too large an event is refused as such (checked in the answer).
        if bytes.len() <= MAX_PAYLOAD {
            let decoded = validate::decode_case_event(&bytes, MAX_PAYLOAD)
                .map_err(|r| TestCaseError::fail(format!("{r:?}")))?;
            prop_assert_eq!(decoded, ev);
        }
        answer_case_event(&bytes, SystemTime::now())?;
    }

    #[test]
    fn a_stranger_s_bytes_on_the_broadcast_subjects_get_a_refusal_never_a_panic(
        subject in broadcast_subject(),
        bytes in command_payload(),
    ) {
        answer_broadcast(subject, &bytes)?;
    }

    #[test]
    fn a_well_formed_broadcast_command_is_accepted_or_refused_naming_a_field(
        command in broadcast_command(),
    ) {
        let (subject, bytes) = match &command {
            Command::Start(r) => (subjects::BROADCAST_START, r.encode_to_vec()),
            Command::Update(r) => (subjects::BROADCAST_UPDATE, r.encode_to_vec()),
            Command::Cancel(r) => (subjects::BROADCAST_CANCEL, r.encode_to_vec()),
        };
        let decoded = validate::decode_broadcast(subject, &bytes)
            .map_err(|r| TestCaseError::fail(format!("{r:?}")))?;
        prop_assert_eq!(decoded, command);
        answer_broadcast(subject, &bytes)?;
    }

    #[test]
    fn a_stranger_s_bytes_on_the_cancel_subject_get_a_refusal_never_a_panic(
        bytes in payload(cancel_request()),
    ) {
        answer_cancel(&bytes)?;
    }

    #[test]
    fn a_well_formed_cancel_request_is_accepted_or_refused_naming_a_field(
        req in cancel_request(),
    ) {
        let answer = validate::check_cancel(&req.encode_to_vec());
        if let Ok((key, _)) = &answer {
            prop_assert_eq!(key, &req.cancel_key);
        }
        answer_cancel(&req.encode_to_vec())?;
    }

    #[test]
    fn a_stranger_s_bytes_on_the_breach_subject_get_a_refusal_never_a_panic(
        bytes in payload(breach_release()),
    ) {
        match validate::check_breach_release(&bytes) {
            Err(r) => clear_refusal(&r, BREACH_FIELDS)?,
            Ok((breach, reason)) => {
                prop_assert!(herald_proto::broadcasts::is_breach_id(&breach));
                prop_assert!(!reason.trim().is_empty());
            }
        }
    }

    #[test]
    fn a_stranger_s_bytes_on_the_directory_subject_get_a_refusal_never_a_panic(
        bytes in payload(directory_request()),
    ) {
        answer_directory(&bytes)?;
    }

    #[test]
    fn a_well_formed_directory_request_is_accepted_or_refused_naming_a_field(
        req in directory_request(),
    ) {
        let answer = validate::read_directory(&req.encode_to_vec());
        if req.op.is_none() {
            prop_assert_eq!(answer.map(|_| ()).map_err(|r| r.field), Err("op".to_string()));
        } else {
            answer_directory(&req.encode_to_vec())?;
        }
    }
}
