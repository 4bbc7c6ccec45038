//! Runs one Herald service as its own process, configured from
//! `HERALD_CONFIG` and `HERALD_*` variables, so tests can SIGKILL it and
//! start it again. Usage:
//! `herald-service <intake|router|delivery|sla|escalation|broadcast>`.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    herald_runtime::install_crypto();
    let name = std::env::args().nth(1).unwrap_or_default();
    let cfg = herald_config::Config::from_process_env()?;
    let _telemetry = herald_runtime::telemetry::init(&format!("herald-{name}"), &cfg.telemetry)?;
    let shutdown = herald_runtime::shutdown::on_signals();
    match name.as_str() {
        "intake" => herald_intake::run(cfg, shutdown).await,
        "router" => herald_router::run(cfg, shutdown).await,
        "delivery" => herald_delivery::run(cfg, shutdown).await,
        "broadcast" => herald_broadcast::run(cfg, shutdown).await,
        "sla" => herald_sla::run(cfg, shutdown).await,
        "escalation" => herald_escalation::run(cfg, shutdown).await,
        other => anyhow::bail!("no service named {other:?}"),
    }
}
