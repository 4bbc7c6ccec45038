//! The shared test kit: real servers on free loopback ports, provider sinks
//! that record what arrived on the wire, a whole Herald in-process (or as
//! processes), and the helpers the end-to-end tests share.
//!
//! | module | what it gives a test |
//! |---|---|
//! | [`system`] | [`TestSystem`]: NATS, Redis, SMTP and HTTP sinks, the services in this process |
//! | [`traced`] | intake, router and delivery as processes exporting spans to [`otlp`] |
//! | [`cluster`] | three nats-servers clustered on loopback, with `herald setup`'s credentials |
//! | [`fleet`] | a Herald over that cluster: every service as several processes, each to SIGKILL |
//! | [`sentinel`] | a Redis primary and replica behind three Sentinels, to fail over mid-run |
//! | [`process`] | one service as a process, to SIGKILL and start again |
//! | [`providers`] | the SMTP and HTTP sinks over TLS, the callers every system knows, the test configuration |
//! | [`fixtures`] | contacts, one-off recipients, requests |
//! | [`submit`] | requests sent as a careful client sends them, retried until accepted |
//! | [`count`] | exactly what reached the sinks: arrived, lost, delivered twice |
//! | [`idle`] | knowing nothing more is on its way (idle) or left to happen (settled), instead of sleeping |
//! | [`chaos`] | the fault runs: one at a time (a mutex), each printing its row of the fault table; a mid-run fault as a scenario |
//! | [`cases`] | fast SLA and escalation policies, the staff roster, case events and views |
//! | [`scrape`] | `/metrics` and `/readyz` read as Prometheus and a load balancer would |
//! | [`deploy`] | the files under `deploy/`, parsed |
//! | [`cli`] | the `herald` command line run against a test system |
//! | [`grpc`] | intake's gRPC API with an API key (or without), plain or over TLS with a test CA |
//! | [`alertmanager`] | a real Alertmanager whose webhook receiver is Herald |

pub mod alertmanager;
pub mod benchkit;
pub mod cases;
pub mod chaos;
pub mod cli;
pub mod cluster;
pub mod count;
pub mod deploy;
pub mod fixtures;
pub mod fleet;
pub mod grpc;
pub mod http;
pub mod idle;
pub mod mime;
pub mod otlp;
pub mod process;
pub mod providers;
pub mod scrape;
pub mod sentinel;
pub mod servers;
pub mod smtp;
pub mod submit;
pub mod system;
pub mod traced;
pub mod wait;

pub use system::TestSystem;
