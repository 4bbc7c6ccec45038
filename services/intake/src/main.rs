//! The intake service binary. Configuration: `HERALD_CONFIG` (a TOML file)
//! and `HERALD_*` variables; see `config/herald.example.toml`.

/// Many small short-lived allocations per message: mimalloc spends a
/// fraction of the CPU glibc's allocator does on them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    herald_runtime::service::main("herald-intake", herald_intake::run).await
}
