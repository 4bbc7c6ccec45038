//! Personal data stays out of what an operator collects: with debug logs
//! on and a provider quoting the number and the text back in its errors,
//! no address, name, reference or message text reaches the logs, the
//! exported spans or the audit trail, while every log line about a
//! notification still carries its trace.

use herald_config::LogFormat;
use herald_proto::subjects;
use herald_testkit::{
    fixtures::{contact, inquiry},
    http::Reply,
    traced::{TracedSystem, WAIT, is_delivery_attempt},
};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn personal_data_stays_out_of_logs_and_exported_spans() {
    let mut h = TracedSystem::start(
        LogFormat::Json,
        "debug,h2=info,hyper=info,hyper_util=info,tower=info,tonic=info",
    )
    .await;
    const EMAIL: &str = "zelda.quartermaine@example.org";
    const PHONE: &str = "+447700900777";
    const REFERENCE: &str = "ZQ-REF-5521";
    let mut zelda = contact("zq", Some(EMAIL), Some(PHONE), "sms");
    zelda.name = "Zelda Quartermaine".into();
    h.add_contacts(&[zelda]).await;
    // The SMS provider refuses twice, quoting the number and the text back
    // as providers do: first "busy", then "invalid". Delivery falls back to
    // email.
    h.http.respond_with(|req, before| {
        let quoted = serde_json::json!({
            "code": 21211,
            "message": format!(
                "The 'To' number {} is not valid; message '{}' refused",
                req.field("To").unwrap_or_default(),
                req.field("Body").unwrap_or_default()
            ),
        })
        .to_string();
        Reply {
            status: if before == 0 { 503 } else { 400 },
            headers: vec![("content-type".into(), "application/json".into())],
            body: quoted,
        }
    });

    let id = h.notify(&inquiry("pii-1", "zq", REFERENCE), None).await;
    let mails = h.smtp.wait_for(1, WAIT).await;
    let sms = h.http.wait_for("/sms", 2, WAIT).await;
    let email_body = mails[0].body();
    let sms_body = sms[0].field("Body").unwrap().to_string();
    assert!(email_body.contains(REFERENCE) && email_body.contains("Zelda Quartermaine"));
    assert!(sms_body.contains(REFERENCE));
    h.otlp
        .wait_for(WAIT, "the fallback email's delivery span", |spans| {
            spans.iter().any(|s| {
                is_delivery_attempt(s, &id)
                    && s.attr("channel") == Some("email")
                    && s.attr("outcome") == Some("sent")
            })
        })
        .await;
    let logs = h.stop_and_collect_logs();
    let spans = h.otlp.spans();
    let exported = format!("{:?}", h.otlp.requests());

    // The path went through the failures whose messages quote the data.
    assert!(
        spans
            .iter()
            .any(|s| is_delivery_attempt(s, &id) && s.attr("outcome") == Some("retry")),
        "the transient SMS failure is in the trace"
    );
    assert!(
        spans
            .iter()
            .any(|s| is_delivery_attempt(s, &id) && s.attr("outcome") == Some("fallback")),
        "the permanent SMS failure is in the trace"
    );
    assert!(logs.contains(&id), "the logs speak of the notification");
    assert!(
        exported.contains(&id),
        "the spans speak of the notification"
    );

    let personal = [
        EMAIL,
        "zelda.quartermaine",
        PHONE,
        &PHONE[1..],
        "Zelda",
        "Quartermaine",
        REFERENCE,
        sms_body.as_str(),
        email_body.trim(),
        "Thank you for contacting us",
    ];
    for value in personal {
        assert!(!logs.contains(value), "{value:?} in the logs:\n{logs}");
        assert!(!exported.contains(value), "{value:?} in the exported spans");
    }

    // The logs are JSON, and every line about this notification carries
    // its trace id.
    let trace_id = &spans
        .iter()
        .find(|s| s.service == "herald-intake" && s.attr("notification_id") == Some(&id))
        .expect("intake span")
        .trace_id;
    let mut about = 0;
    for line in logs.lines().filter(|l| l.starts_with('{')) {
        let v: serde_json::Value = serde_json::from_str(line).expect("a JSON log line");
        if line.contains(&id) {
            about += 1;
            assert_eq!(v["trace_id"].as_str(), Some(trace_id.as_str()), "{line}");
            assert_eq!(v["span_id"].as_str().map(str::len), Some(16), "{line}");
        }
    }
    assert!(
        about > 0,
        "no JSON log line names the notification:\n{logs}"
    );

    // The audit trail keeps the provider's code, not its words.
    // Read as an operator would.
    let bus = herald_runtime::bus::Bus::connect(&h.cfg.nats, "operator", &CancellationToken::new())
        .await
        .expect("bus");
    let trail = herald_runtime::audit::read_trail(&bus, &subjects::audit_of_notification(&id))
        .await
        .expect("trail");
    let trail = format!("{trail:?}");
    assert!(trail.contains("code=21211"), "{trail}");
    for value in [PHONE, &PHONE[1..], REFERENCE, "Zelda"] {
        assert!(
            !trail.contains(value),
            "{value:?} in the audit trail: {trail}"
        );
    }
}
