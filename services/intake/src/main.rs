//! The intake service binary. Configuration: `HERALD_CONFIG` (a TOML file)
//! and `HERALD_*` variables; see `config/herald.example.toml`.

/// Many small short-lived allocations per message: mimalloc spends a
/// fraction of the CPU glibc's allocator does on them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    herald_runtime::install_crypto();
    let cfg = herald_config::Config::from_process_env()?;
    let _telemetry = herald_runtime::telemetry::init("herald-intake", &cfg.telemetry)?;
    let shutdown = herald_runtime::shutdown::on_signals();
    herald_intake::run(cfg, shutdown).await
}
