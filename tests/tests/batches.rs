//! A stage that works in batches (`bus::consume_batches`, the router's and
//! delivery's consumers; `serve` with a batch, intake's front door): it
//! takes what is ready without waiting for more, never more than its
//! bound, and settles or answers each message as its own handler says.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, atomic::AtomicBool},
    time::Duration,
};

use async_nats::jetstream::{self, stream};
use herald_runtime::bus::{self, Bus, ConsumerSpec, Disposition, Gate};
use herald_testkit::servers::NatsServer;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Seen {
    batches: Vec<Vec<u32>>,
    times: HashMap<u32, usize>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_takes_what_is_ready_and_each_message_is_settled_by_its_own_answer() {
    let nats = NatsServer::start();
    let admin = nats.admin().await;
    let js = jetstream::new(admin.clone());
    // A backlog, there before the consumer starts.
    const BACKLOG: u32 = 300;
    let work = backlog(&js, "BATCHES", BACKLOG).await;

    let seen = Arc::new(Mutex::new(Seen::default()));
    let shutdown = CancellationToken::new();
    let handler = {
        let seen = seen.clone();
        move |msgs: Vec<jetstream::Message>| {
            let seen = seen.clone();
            async move {
                let mut seen = seen.lock().unwrap();
                let numbers: Vec<u32> = msgs
                    .iter()
                    .map(|m| std::str::from_utf8(&m.payload).unwrap().parse().unwrap())
                    .collect();
                let answers = numbers
                    .iter()
                    .map(|n| {
                        let times = seen.times.entry(*n).or_default();
                        *times += 1;
                        // Every tenth message fails its first turn; the rest
                        // of its batch must not come back with it.
                        if n % 10 == 3 && *times == 1 {
                            Disposition::Retry(Duration::from_millis(100))
                        } else {
                            Disposition::Ack
                        }
                    })
                    .collect();
                seen.batches.push(numbers);
                answers
            }
        }
    };
    let consumer = consume(
        &admin,
        "BATCHES",
        (64, 16),
        Gate::None,
        shutdown.clone(),
        handler,
    );

    let deadline = tokio::time::Instant::now() + WAIT;
    until_drained(&work, deadline, "backlog not drained").await;
    {
        let seen = seen.lock().unwrap();
        let largest = seen.batches.iter().map(Vec::len).max().unwrap_or(0);
        assert!(largest > 1, "a backlog is taken in batches");
        assert!(largest <= 16, "no batch beyond its bound: {largest}");
        for n in 0..BACKLOG {
            let want = if n % 10 == 3 { 2 } else { 1 };
            assert_eq!(seen.times.get(&n), Some(&want), "message {n}");
        }
    }

    // A lone message is not held back waiting for company.
    let before = seen.lock().unwrap().batches.len();
    js.publish("batches.x", "1000".into())
        .await
        .expect("publish")
        .await
        .expect("stored");
    until_drained(&work, deadline, "lone message not handled").await;
    let lone = seen.lock().unwrap().batches[before..].to_vec();
    assert_eq!(lone, [vec![1000]]);
    shutdown.cancel();
    consumer.await.expect("consumer").expect("stopped cleanly");
}

/// Whether every message of the work-queue stream has been acknowledged.
async fn drained(work: &stream::Stream) -> bool {
    work.clone().info().await.expect("info").state.messages == 0
}

/// Waits until every message of `work` is acknowledged; fails saying
/// `what` if that is not so by `deadline`.
async fn until_drained(work: &stream::Stream, deadline: tokio::time::Instant, what: &str) {
    while !drained(work).await {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Request/reply in batches (`serve` with `ServeOptions::batch`, intake's
/// front door): requests that arrive together are answered by one task,
/// never more than the bound, and each caller gets its own answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_arrive_together_are_answered_together_each_with_its_own_reply() {
    let nats = NatsServer::start();
    let admin = nats.admin().await;
    let requests = admin.subscribe("batches.ask").await.expect("subscribe");
    // Which task answered each request: one task per batch.
    let tasks: Arc<Mutex<HashMap<String, Vec<u32>>>> = Arc::default();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn({
        let (client, tasks, shutdown) = (admin.clone(), tasks.clone(), shutdown.clone());
        async move {
            herald_runtime::serve::serve(
                client,
                requests,
                herald_runtime::serve::ServeOptions::new(64).batch(8),
                shutdown,
                move |msg: async_nats::Message| {
                    let tasks = tasks.clone();
                    async move {
                        let n: u32 = std::str::from_utf8(&msg.payload).unwrap().parse().unwrap();
                        let task = format!("{:?}", tokio::task::try_id());
                        tasks.lock().unwrap().entry(task).or_default().push(n);
                        Some(format!("answer {n}").into())
                    }
                },
            )
            .await
        }
    });

    const ASKED: u32 = 400;
    let asked = (0..ASKED).map(|n| {
        let client = admin.clone();
        async move {
            let reply =
                tokio::time::timeout(WAIT, client.request("batches.ask", n.to_string().into()))
                    .await
                    .expect("answered in time")
                    .expect("answered");
            (n, String::from_utf8(reply.payload.to_vec()).unwrap())
        }
    });
    for (n, reply) in futures::future::join_all(asked).await {
        assert_eq!(
            reply,
            format!("answer {n}"),
            "request {n} got its own answer"
        );
    }
    {
        let tasks = tasks.lock().unwrap();
        let largest = tasks.values().map(Vec::len).max().unwrap_or(0);
        assert!(largest > 1, "requests that arrived together shared a task");
        assert!(largest <= 8, "no batch beyond its bound: {largest}");
        assert_eq!(tasks.values().map(Vec::len).sum::<usize>(), ASKED as usize);
    }

    // A lone request is answered without waiting for company.
    let reply = tokio::time::timeout(WAIT, admin.request("batches.ask", "1000".into()))
        .await
        .expect("answered in time")
        .expect("answered");
    assert_eq!(&reply.payload[..], b"answer 1000");
    shutdown.cancel();
    server.await.expect("server stopped");
}

/// On the emergency lane a batch counts as one piece of emergency work per
/// message: one message that waits (on a provider's pace, say) steps aside
/// for itself, and the rest of its batch still holds the normal lane back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emergency_message_that_waits_steps_aside_alone_and_its_batch_still_holds_the_normal_lane()
 {
    let nats = NatsServer::start();
    let admin = nats.admin().await;
    let js = jetstream::new(admin.clone());
    let work = backlog(&js, "URGENT", 64).await;
    let precedence = herald_runtime::priority::Precedence::new();
    // For each batch: its size, and whether the normal lane was held while
    // one of its messages stood aside.
    let seen: Arc<Mutex<Vec<(usize, bool)>>> = Arc::default();
    let shutdown = CancellationToken::new();
    let handler = {
        let (seen, precedence) = (seen.clone(), precedence.clone());
        move |msgs: Vec<jetstream::Message>| {
            let (seen, precedence) = (seen.clone(), precedence.clone());
            async move {
                let waiting = precedence.park();
                let held = precedence.is_yielding();
                drop(waiting);
                seen.lock().unwrap().push((msgs.len(), held));
                tokio::time::sleep(Duration::from_millis(5)).await;
                vec![Disposition::Ack; msgs.len()]
            }
        }
    };
    // As many in hand as one batch: a full batch is the only work there.
    let consumer = consume(
        &admin,
        "URGENT",
        (16, 16),
        Gate::Busy(precedence.clone()),
        shutdown.clone(),
        handler,
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    until_drained(&work, deadline, "backlog not drained").await;
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.iter().any(|(n, _)| *n > 1),
        "the backlog came in batches: {seen:?}"
    );
    for (n, held) in &seen {
        if *n > 1 {
            assert!(
                held,
                "a batch of {n} with one message waiting let the normal lane go"
            );
        }
    }
    shutdown.cancel();
    consumer.await.expect("consumer").expect("stopped cleanly");
    assert!(
        !precedence.is_yielding(),
        "no emergency work left when all is settled"
    );
}

/// A work-queue stream `name` on `<name>.>` holding `count` messages,
/// the numbers from 0, there before any consumer starts.
async fn backlog(js: &jetstream::Context, name: &str, count: u32) -> stream::Stream {
    let subject = name.to_lowercase();
    let work = js
        .create_stream(stream::Config {
            name: name.into(),
            subjects: vec![format!("{subject}.>")],
            retention: stream::RetentionPolicy::WorkQueue,
            ..Default::default()
        })
        .await
        .expect("stream");
    for i in 0..count {
        js.publish(format!("{subject}.x"), i.to_string().into())
            .await
            .expect("publish")
            .await
            .expect("stored");
    }
    work
}

/// Runs `handler` over the stream `name` (see [`backlog`]) in batches of
/// at most `bound`, `concurrency` messages in hand, until `shutdown`.
fn consume<F, Fut>(
    admin: &async_nats::Client,
    name: &str,
    (concurrency, bound): (usize, usize),
    gate: Gate,
    shutdown: CancellationToken,
    handler: F,
) -> tokio::task::JoinHandle<anyhow::Result<()>>
where
    F: Fn(Vec<jetstream::Message>) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = Vec<Disposition>> + Send + 'static,
{
    let bus = Bus {
        client: admin.clone(),
        js: jetstream::new(admin.clone()),
        cfg: herald_config::NatsConfig::default(),
        identity: herald_testkit::servers::KIT_ADMIN.into(),
    };
    let subject = name.to_lowercase();
    let spec = ConsumerSpec {
        stream: name.into(),
        durable: subject.clone(),
        filter: format!("{subject}.>"),
        concurrency,
        ack_wait: Duration::from_secs(30),
        max_deliver: -1,
    };
    tokio::spawn(async move {
        bus::consume_batches(
            &bus,
            spec,
            gate,
            bound,
            Arc::new(AtomicBool::new(false)),
            shutdown,
            Duration::from_secs(5),
            handler,
        )
        .await
    })
}
