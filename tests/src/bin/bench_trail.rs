//! `make bench-trail`: a client's year of history out of an audit stream
//! of a million records (SOP 001 §4.1: every interaction answerable by
//! client and date), through intake's index.
//!
//! 1. load: `--records` (default 1,000,000) audit writes, one record each,
//!    for `--clients` (default 10,000) people, their times spread over the
//!    past year, published to the audit stream as the services write them;
//!    the rate intake indexes them at (from the first write to the index
//!    consumer's last acknowledgement).
//! 2. query: `herald.v1.intake.trail` for the whole year of `--queries`
//!    (default 20) clients picked across the range, each answered with all
//!    of that client's records: p50 and max.
//! 3. baseline, in the same run: the same number of records read back as
//!    one notification's trail is (a consumer filtered on its subject), the
//!    way a trail by id is read; and the ratio of the two.

use std::time::{Duration, Instant};

use herald_proto::{
    Message, subjects,
    v1::{AuditBatch, AuditRecord, AuditStep, TrailQuery, TrailReply, trail_reply},
};
use herald_testkit::TestSystem;

struct Args {
    records: usize,
    clients: usize,
    queries: usize,
}

fn args() -> Args {
    let mut a = Args {
        records: 1_000_000,
        clients: 10_000,
        queries: 20,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.iter();
    while let Some(k) = it.next() {
        let v = it.next().and_then(|v| v.parse::<usize>().ok());
        match (k.as_str(), v) {
            ("--records", Some(v)) => a.records = v,
            ("--clients", Some(v)) => a.clients = v.max(1),
            ("--queries", Some(v)) => a.queries = v.max(1),
            _ => {
                eprintln!("usage: herald-bench-trail [--records N] [--clients N] [--queries N]");
                std::process::exit(2);
            }
        }
    }
    a
}

fn client(i: usize) -> String {
    format!("client-{i:06}")
}

/// Record `i`: client `i % clients`, at a time of the past year.
fn record(i: usize, clients: usize, now_s: i64) -> AuditRecord {
    let year = 365 * 24 * 3600;
    let at = now_s - year + ((i as i64).wrapping_mul(7919) % year);
    AuditRecord {
        record_id: format!("bench-{i}"),
        notification_id: format!("ntf_bench{:09}", i / 4),
        step: AuditStep::Sent as i32,
        at: Some(herald_proto::Timestamp {
            seconds: at,
            nanos: 0,
        }),
        actor: "delivery".into(),
        summary: "sent by email".into(),
        contact_id: client(i % clients),
        ..Default::default()
    }
}

#[tokio::main]
async fn main() {
    let a = args();
    let sys = TestSystem::start().await;
    let js = async_nats::jetstream::new(sys.client.clone());
    let now_s = chrono::Utc::now().timestamp();

    let started = Instant::now();
    let mut acks = Vec::with_capacity(1000);
    for i in 0..a.records {
        let r = record(i, a.clients, now_s);
        let subject = subjects::audit(&r.case_id, &r.notification_id);
        let batch = AuditBatch { records: vec![r] };
        let ack = js
            .publish(subject, batch.encode_to_vec().into())
            .await
            .unwrap_or_else(|e| panic!("publish {i}: {e}"));
        acks.push(ack);
        if acks.len() == 1000 {
            for ack in acks.drain(..) {
                ack.await.unwrap_or_else(|e| panic!("ack: {e}"));
            }
        }
    }
    for ack in acks.drain(..) {
        ack.await.unwrap_or_else(|e| panic!("ack: {e}"));
    }
    let published = started.elapsed();
    eprintln!(
        "published {} records in {:.1} s",
        a.records,
        published.as_secs_f64()
    );
    let mut stream = js
        .get_stream(subjects::STREAM_AUDIT)
        .await
        .unwrap_or_else(|e| panic!("audit stream: {e}"));
    loop {
        let info = stream
            .consumer_info("intake-trail-index")
            .await
            .unwrap_or_else(|e| panic!("index consumer: {e}"));
        if info.num_pending == 0 && info.num_ack_pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let indexed = started.elapsed();
    eprintln!("indexed after {:.1} s", indexed.as_secs_f64());
    let stored = stream
        .info()
        .await
        .map(|i| i.state.messages)
        .unwrap_or_default();

    // Queries: each client's whole year.
    let per_client = a.records / a.clients;
    let mut took = Vec::new();
    for q in 0..a.queries {
        let who = client(q * a.clients / a.queries);
        let query = TrailQuery {
            client_contact_id: who.clone(),
            since: Some(herald_proto::Timestamp {
                seconds: now_s - 366 * 24 * 3600,
                nanos: 0,
            }),
            limit: 100_000,
            ..Default::default()
        };
        let t = Instant::now();
        let reply = sys
            .client
            .request(
                subjects::from_caller(subjects::INTAKE_TRAIL, "operator"),
                query.encode_to_vec().into(),
            )
            .await
            .unwrap_or_else(|e| panic!("query: {e}"));
        let elapsed = t.elapsed();
        match TrailReply::decode(reply.payload)
            .unwrap_or_else(|e| panic!("reply: {e}"))
            .result
        {
            Some(trail_reply::Result::Records(r)) => {
                assert!(
                    r.records.len() >= per_client && r.records.iter().all(|x| x.contact_id == who),
                    "{who}: {} records",
                    r.records.len()
                );
            }
            other => panic!("{who}: {other:?}"),
        }
        took.push(elapsed);
    }
    took.sort();

    // Baseline: as many records read back as one notification's trail is.
    let base_id = "ntf_baseline";
    for i in 0..per_client {
        let r = AuditRecord {
            record_id: format!("base-{i}"),
            notification_id: base_id.into(),
            ..record(i, a.clients, now_s)
        };
        let subject = subjects::audit("", base_id);
        js.publish(
            subject,
            AuditBatch { records: vec![r] }.encode_to_vec().into(),
        )
        .await
        .unwrap_or_else(|e| panic!("baseline publish: {e}"))
        .await
        .unwrap_or_else(|e| panic!("baseline ack: {e}"));
    }
    let bus = sys.bus().await;
    let mut base = Vec::new();
    for _ in 0..a.queries.min(5) {
        let t = Instant::now();
        let trail =
            herald_runtime::audit::read_trail(&bus, &subjects::audit_of_notification(base_id))
                .await
                .unwrap_or_else(|e| panic!("baseline read: {e}"));
        base.push(t.elapsed());
        assert_eq!(trail.len(), per_client);
    }
    base.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (p50, max) = (took[took.len() / 2], took[took.len() - 1]);
    let b50 = base[base.len() / 2];
    println!("| figure | value | target | met |");
    println!("|---|---|---|---|");
    println!("| audit records in the stream | {stored} | 1,000,000 | |");
    println!(
        "| published, then indexed | {:.1} s, {:.1} s ({:.0} records/s indexed) | | |",
        published.as_secs_f64(),
        indexed.as_secs_f64(),
        a.records as f64 / indexed.as_secs_f64()
    );
    println!(
        "| a client's year ({per_client} records), p50 / max of {} | {:.1} ms / {:.1} ms | < 1000 ms | {} |",
        a.queries,
        ms(p50),
        ms(max),
        if max < Duration::from_secs(1) {
            "yes"
        } else {
            "no"
        }
    );
    println!(
        "| baseline: {per_client} records of one notification's trail, p50 | {:.1} ms | | |",
        ms(b50)
    );
    println!(
        "| ratio query / baseline | {:.2} | | |",
        ms(p50) / ms(b50).max(0.001)
    );
}
