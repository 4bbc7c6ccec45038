//! Fault runs: thousands of notifications through a [`TestSystem`]
//! while something breaks, then an exact count of what reached the sinks.
//!
//! Two conventions hold for every fault test:
//!
//! * **One at a time.** Each takes [`serial`] (a mutex, one per test
//!   binary) first and holds it to the end, so its timings (time to
//!   recover, time to stop) are its own even when the harness runs the
//!   tests of a file in parallel. [`run`] takes it itself and hands it
//!   back in the [`Outcome`].
//! * **One row each.** Each prints its row of the fault table with
//!   [`row`], on a line of its own starting with `| `, so that
//!   ```text
//!   cargo test -p herald-testkit --test faults -- --nocapture | grep '^| '
//!   ```
//!   collects the table (N, lost, duplicated, time to recover, notes).
//!
//! Faults that strike a running pipeline from outside (a service killed or
//! stopped, nats-server killed) share one shape, [`run`]: start a system,
//! submit a mix of SMS and email, strike once a third has gone out, bring
//! the broken part back, wait for every message and for Herald to be idle,
//! count. A test states only its [`Scenario`] and what it asserts about
//! the [`Outcome`].

use std::{
    collections::HashSet,
    net::SocketAddr,
    time::{Duration, Instant},
};

use herald_config::Config;
use herald_proto::v1::{AuditStep, Channel, NotificationRequest};
use tokio::sync::{Mutex, MutexGuard};

use crate::{
    TestSystem,
    count::{Count, count_http, count_mail, job_id},
    fixtures::{inquiry_to, person},
    process::ServiceProcess,
    scrape,
    servers::free_port,
    submit::submit_all,
    wait::until,
};

static SERIAL: Mutex<()> = Mutex::const_new(());

/// The lock every fault test holds from its first line to its last.
pub async fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().await
}

/// Prints one row of the fault table.
pub fn row(run: &str, n: usize, c: &Count, recovered: Option<Duration>, note: &str) {
    // On a line of its own: the harness may have printed the test's name
    // without ending the line.
    println!(
        "\n| {run} | {n} | {} | {} | {} | {} |",
        c.lost,
        c.duplicated,
        recovered
            .map(|d| format!("{:.1} s", d.as_secs_f64()))
            .unwrap_or_else(|| "n/a".into()),
        note
    );
}

/// What breaks, once a third of the messages have gone out.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// Delivery, as a process of its own, SIGKILLed and started again
    /// after `down`.
    KillDelivery { down: Duration },
    /// Delivery, as a process of its own, stopped with SIGTERM (waited
    /// for) and started again at once.
    StopDelivery,
    /// nats-server SIGKILLed and started again on the same port and data
    /// after `down`.
    KillNats { down: Duration },
}

/// One fault run: `n` notifications, half SMS and half email, each to a
/// one-off recipient who can receive only that (idempotency keys
/// `<tag>-<i>`), with `fault` striking mid-run.
pub struct Scenario {
    pub n: usize,
    pub tag: &'static str,
    pub fault: Fault,
    /// Adjusts the test configuration before the system starts.
    pub configure: fn(&mut Config),
    /// The SMS sink answers a repeated `Idempotency-Key` from its cache, as
    /// real providers do, instead of taking it as a new message (repeats
    /// are then counted as absorbed, not duplicated).
    pub provider_honours_idempotency: bool,
}

/// What a fault run left behind, to assert on.
pub struct Outcome {
    pub sys: TestSystem,
    /// The delivery process and its HTTP address, when the fault struck
    /// delivery.
    pub delivery: Option<(ServiceProcess, SocketAddr)>,
    pub sms: Count,
    pub email: Count,
    /// Messages at the sinks just after the fault struck.
    pub at_fault: usize,
    /// How long the fault itself took (for SIGTERM: the graceful stop).
    pub striking: Duration,
    /// From bringing the broken part back to the last message arriving.
    pub recovered: Duration,
    /// Every notification id intake accepted.
    pub ids: Vec<String>,
    _serial: MutexGuard<'static, ()>,
}

impl Outcome {
    /// Both channels as one row of the table.
    pub fn both(&self) -> Count {
        let (s, e) = (&self.sms, &self.email);
        Count {
            expected: s.expected + e.expected,
            arrived: s.arrived + e.arrived,
            lost: s.lost + e.lost,
            duplicated: s.duplicated + e.duplicated,
            absorbed: s.absorbed + e.absorbed,
            unexpected: s.unexpected + e.unexpected,
        }
    }

    /// How many accepted notifications lack their "accepted" record, and
    /// how many lack a "sent" record, in the trail.
    pub async fn trail_gaps(&self) -> (usize, usize) {
        trail_gaps(&self.sys.bus().await, &self.ids).await
    }

    /// The HTTP address of the delivery process the fault struck.
    pub fn delivery_addr(&self) -> SocketAddr {
        self.delivery
            .as_ref()
            .map(|(_, addr)| *addr)
            .expect("the fault struck delivery")
    }
}

/// How many of `ids` lack their "accepted" record, and how many lack a
/// "sent" record, in the trail (read whole, once).
pub async fn trail_gaps(bus: &herald_runtime::bus::Bus, ids: &[String]) -> (usize, usize) {
    let all = herald_runtime::audit::read_trail(bus, &herald_proto::subjects::audit_everything())
        .await
        .unwrap_or_else(|e| panic!("the audit stream reads: {e}"));
    let with = |step: AuditStep| -> HashSet<&str> {
        all.iter()
            .filter(|r| r.step() == step)
            .map(|r| r.notification_id.as_str())
            .collect()
    };
    let (accepted, sent) = (with(AuditStep::Accepted), with(AuditStep::Sent));
    let missing =
        |have: &HashSet<&str>| ids.iter().filter(|id| !have.contains(id.as_str())).count();
    (missing(&accepted), missing(&sent))
}

/// Runs `scenario` (see the module) and counts what reached the sinks once
/// every message has arrived and nothing more is on its way.
pub async fn run(scenario: Scenario) -> Outcome {
    let serial = serial().await;
    let n = scenario.n;
    let mut sys = TestSystem::start_with(scenario.configure).await;
    if scenario.provider_honours_idempotency {
        sys.http.honour_idempotency_keys();
    }
    let mut delivery = match scenario.fault {
        Fault::KillDelivery { .. } | Fault::StopDelivery => Some(delivery_process(&mut sys).await),
        Fault::KillNats { .. } => None,
    };
    let client = sys.client.clone();
    let reqs = mixed(n, scenario.tag);
    let submitted = tokio::spawn(async move { submit_all(&client, reqs, 64).await });
    let sent = |sys: &TestSystem| sys.smtp.count() + sys.http.requests_to("/sms").len();
    until(
        "a third of the messages sent",
        Duration::from_secs(60),
        || sent(&sys) >= n / 3,
    )
    .await;

    let striking = Instant::now();
    match (scenario.fault, delivery.as_mut()) {
        (Fault::KillDelivery { .. }, Some((p, _))) => p.kill(),
        (Fault::StopDelivery, Some((p, _))) => p.terminate(),
        (Fault::KillNats { .. }, _) => sys.nats.kill(),
        (fault, None) => unreachable!("{fault:?} without a delivery process"),
    }
    let striking = striking.elapsed();
    let at_fault = sent(&sys);
    match (scenario.fault, delivery.as_mut()) {
        (Fault::KillDelivery { down }, Some((p, _))) => {
            tokio::time::sleep(down).await;
            p.start();
        }
        (Fault::StopDelivery, Some((p, _))) => p.start(),
        (Fault::KillNats { down }, _) => {
            tokio::time::sleep(down).await;
            sys.nats.restart();
        }
        (fault, None) => unreachable!("{fault:?} without a delivery process"),
    }
    let back = Instant::now();

    let ids = submitted.await.expect("every request accepted");
    let (sms, email) = split(&ids);
    let count = |sys: &TestSystem| {
        (
            count_http(&sys.http.requests_to("/sms"), &sms),
            count_mail(&sys.smtp.mails(), &email),
        )
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    let done = loop {
        let (s, e) = count(&sys);
        if s.lost == 0 && e.lost == 0 {
            break Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "not every message arrived within 120 s: sms {s:?}, email {e:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // A repeat, if there were one, would still be on its way: count once
    // nothing is.
    sys.wait_until_idle().await;
    let (sms, email) = count(&sys);
    Outcome {
        sys,
        delivery,
        sms,
        email,
        at_fault,
        striking,
        recovered: done.saturating_duration_since(back),
        ids,
        _serial: serial,
    }
}

/// Delivery as a process of its own on a fixed HTTP port, in place of the
/// in-process one, so it can be killed; returns it and its HTTP address.
pub async fn delivery_process(sys: &mut TestSystem) -> (ServiceProcess, SocketAddr) {
    sys.stop("delivery").await;
    let mut cfg = sys.cfg_for("delivery");
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    cfg.delivery.http_addr = addr.to_string();
    // Shutdown, draining and take-overs are logged at info: what a fault
    // test shows when its timing is off.
    let p = ServiceProcess::spawn_with_env(
        "delivery",
        &cfg,
        &[("RUST_LOG", "warn,herald_runtime=info,herald_delivery=info")],
    );
    scrape::wait_readyz(addr, 200, Duration::from_secs(30)).await;
    (p, addr)
}

/// Half SMS, half email: one-off recipients who can receive only that.
pub fn mixed(n: usize, tag: &str) -> Vec<NotificationRequest> {
    (0..n)
        .map(|i| {
            let ch = if i % 2 == 0 {
                Channel::Sms
            } else {
                Channel::Email
            };
            inquiry_to(&format!("{tag}-{i}"), person(i, &[ch]))
        })
        .collect()
}

/// The SMS and the email jobs of a [`mixed`] run, by the ids intake gave.
pub fn split(ids: &[String]) -> (HashSet<String>, HashSet<String>) {
    let sms = ids
        .iter()
        .step_by(2)
        .map(|id| job_id(id, Channel::Sms))
        .collect();
    let email = ids
        .iter()
        .skip(1)
        .step_by(2)
        .map(|id| job_id(id, Channel::Email))
        .collect();
    (sms, email)
}
