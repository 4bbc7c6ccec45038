//! router: turns an accepted notification into delivery jobs.
//!
//! For each recipient it resolves the contact, chooses channels by the
//! routing rules (the contact's preferred channel, the approved-channel
//! allowlist, consent), renders the approved template in the recipient's
//! language with fallbacks, withholds sensitive content from channels that
//! may not carry it, and emits one job per recipient and channel. Each lane
//! has its own consumer and workers.
//!
//! Job ids are derived from the notification, so routing the same
//! notification again (after a crash, before the ack) produces the same jobs,
//! which JetStream and delivery both drop as duplicates.

mod audit;
mod metrics;
mod route;

use std::{sync::Arc, time::Duration};

use herald_config::Config;
use herald_content::{
    routing::RoutingRules,
    templates::{CONTENT_FREE_NOTICE, TemplateStore},
};
use herald_directory::contacts::Directory;
use herald_proto::{subjects, v1::Lane};
use herald_runtime::{
    audit::Auditor,
    bus::{Bus, ConsumerSpec},
    metrics::Queue,
    service::ServiceBuilder,
    templates::LiveTemplates,
};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// Everything a routing worker shares.
#[derive(Clone)]
struct Router {
    bus: Bus,
    directory: Directory,
    /// The shipped templates and every version approved since, followed
    /// from the approved-templates stream.
    templates: Arc<LiveTemplates>,
    rules: Arc<RoutingRules>,
    auditor: Auditor,
    metrics: Arc<Metrics>,
}

pub use herald_runtime::service::Running;

/// The most notifications routed together: what is ready, up to this many,
/// shares one directory lookup and one round of confirmations.
const BATCH: usize = 64;

pub async fn run(cfg: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    start(cfg, shutdown).await?.wait().await
}

pub async fn start(cfg: Config, shutdown: CancellationToken) -> anyhow::Result<Running> {
    let templates = TemplateStore::load(&cfg.content.templates_dir)
        .map_err(|p| anyhow::anyhow!("templates:\n  {}", p.join("\n  ")))?;
    templates
        .resolve(CONTENT_FREE_NOTICE, 0)
        .map_err(|e| anyhow::anyhow!("the content-free notice template is required: {e}"))?;
    let rules = RoutingRules::load(cfg.content.routing_file.as_deref())
        .map_err(|p| anyhow::anyhow!("routing rules:\n  {}", p.join("\n  ")))?;
    let mut service = ServiceBuilder::connect("router", &cfg, &shutdown).await?;
    let (templates, following) =
        herald_runtime::templates::follow(&service.bus, templates, shutdown.clone()).await?;
    service.spawn(following);
    let router = Arc::new(Router {
        bus: service.bus.clone(),
        directory: Directory::new(service.redis.clone(), &cfg.redis.prefix),
        templates,
        rules: Arc::new(rules),
        auditor: Auditor::new(service.bus.clone(), "router"),
        metrics: Arc::new(Metrics::register(&mut service.registry)),
    });
    for lane in Lane::ALL {
        let durable = format!("router-{}", lane.name());
        service.watch([
            Queue::consumer(subjects::notify_stream(lane), &durable),
            Queue::stream(subjects::delivery_stream(lane)),
        ]);
        let spec = ConsumerSpec {
            stream: subjects::notify_stream(lane).to_string(),
            durable,
            filter: subjects::notify_accepted(lane).to_string(),
            concurrency: cfg.router.concurrency,
            ack_wait: cfg.nats.ack_wait,
            max_deliver: -1,
        };
        let gate = service.lane_gate(lane);
        let router = router.clone();
        service.consume_batches(spec, gate, BATCH, Duration::from_secs(10), move |msgs| {
            let router = router.clone();
            async move { router.handle_batch(msgs, lane).await }
        });
    }
    service.start(&cfg.router.http_addr).await
}
