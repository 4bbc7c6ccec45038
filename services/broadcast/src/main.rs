//! The broadcast service binary. Configuration: `HERALD_CONFIG` (a TOML
//! file) and `HERALD_*` variables; see `config/herald.example.toml`.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    herald_runtime::service::main("herald-broadcast", herald_broadcast::run).await
}
